"""What every annotation layout reader shares: the result, the skipper, split names, records."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.base import DataError
from pipeline.tasks.detection.splits import Record
from pipeline.tasks.detection.untrusted import inside, read_text

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class Found:
    format: str
    class_names: tuple[str, ...]
    splits: dict[str, list[Record]]
    bad: list[str] = field(default_factory=list)   # errors of skipped images (skip_bad_files)


class Skipper:
    """Collects the error of an image's annotation instead of raising, when skip_bad_files."""

    def __init__(self, skip: bool):
        self.skip, self.bad = skip, []

    def __call__(self, fn, *args):
        """fn(*args), or None (and the error noted) when it raises DataError and skip is on."""
        try:
            return fn(*args)
        except DataError as e:
            if not self.skip:
                raise
            self.bad.append(str(e))
            return None


def split_of(name: str) -> str | None:
    """'train2017' -> 'train', 'valid' -> 'val', 'labels' -> None."""
    name = name.lower().rstrip("0123456789_-")
    return SPLIT_NAMES.get(name)


def record(path: Path, rows: list[tuple[float, float, float, float]], labels: list[int],
            where: list[str], normalized: bool = False) -> Record:
    with np.errstate(over="ignore", invalid="ignore"):   # 1e308 -> inf: check_boxes names the box
        boxes = np.asarray(rows, np.float32).reshape(-1, 4)
    return Record(str(path), boxes, np.asarray(labels, np.int32), where, normalized)




def find_image(root: Path, split: str, file_name: str, where: str) -> Path:
    candidates = [base / file_name for base in (root / split, root / "images" / split, root / "images", root)]
    for c in candidates:   # all checked before any is looked at: nothing outside is touched
        inside(root, c, where, file_name)
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]   # missing: the decoder names it


def class_file(root: Path) -> tuple[str, ...] | None:
    for name in ("labels.txt", "classes.txt"):
        if (root / name).is_file():
            return tuple(line.strip() for line in read_text(root / name).splitlines() if line.strip())
    return None
