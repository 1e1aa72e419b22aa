"""CSV: <split>.csv or labels.csv, filename, class, x0, y0, x1, y1 per object."""
from __future__ import annotations

import csv
from pathlib import Path

from pipeline.data.base import DataError
from pipeline.tasks.detection.layouts.common import Found, Skipper, class_file, record, split_of
from pipeline.tasks.detection.splits import Record
from pipeline.tasks.detection.untrusted import MAX_CLASSES, inside, read_text


def _csv_object(w: str, row: list[str], ids: bool, index: dict[str, int],
                class_names: tuple[str, ...]) -> tuple[tuple, int, str]:
    if len(row) != 6:
        raise DataError(f"{w}: expected filename, class, x0, y0, x1, y1; got {len(row)} fields")
    cls = row[1].strip()
    if ids and _is_int(cls):
        label = int(cls)
        if not 0 <= label < len(class_names):
            raise DataError(f"{w}: class id {label} is not in 0..{len(class_names) - 1}")
    elif cls in index:
        label = index[cls]
    else:
        raise DataError(f"{w}: unknown class {cls!r}; classes: {', '.join(class_names)}")
    try:
        box = tuple(float(v) for v in row[2:])
    except ValueError:
        raise DataError(f"{w}: box coordinates must be numbers, got {row[2:]}") from None
    return box, label, w


def read_csv(root: Path, skipper: Skipper) -> Found:
    files = sorted(root.glob("*.csv"))
    declared = class_file(root)
    rows_by_file = []
    for path in files:
        lines = list(csv.reader(read_text(path).splitlines()))
        header = bool(lines) and len(lines[0]) > 2 and not _is_number(lines[0][2:3])
        rows_by_file.append((path, lines[1:] if header else lines, 2 if header else 1))
    ids = all(_is_int(r[1]) for _, lines, _ in rows_by_file for r in lines if len(r) > 1 and r[1])
    if declared:
        class_names = declared
    elif ids:
        top = 0
        for path, lines, first in rows_by_file:
            for line_no, r in enumerate(lines, first):
                if len(r) > 1 and r[1] and int(r[1]) >= MAX_CLASSES:
                    raise DataError(f"{path}:{line_no}: class id {int(r[1])} is over the limit of "
                                    f"{MAX_CLASSES} classes (labels.txt names them)")
                top = max(top, int(r[1])) if len(r) > 1 and r[1] else top
        class_names = tuple(f"class_{i}" for i in range(top + 1))
    else:
        class_names = tuple(sorted({r[1].strip() for _, lines, _ in rows_by_file for r in lines
                                    if len(r) > 1 and r[1].strip()}))
    index = {n: i for i, n in enumerate(class_names)}
    splits: dict[str, list[Record]] = {}
    for path, lines, first in rows_by_file:
        per_image: dict[str, tuple[list, list, list]] = {}
        bad: set[str] = set()
        for line_no, row in enumerate(lines, first):
            if not row or not row[0].strip():
                continue
            entry = per_image.setdefault(row[0].strip(), ([], [], []))
            if len(row) == 1 or all(not v.strip() for v in row[1:]):
                continue   # a background image
            obj = skipper(_csv_object, f"{path}:{line_no}", row, ids, index, class_names)
            if obj is None:
                bad.add(row[0].strip())
                continue
            for part, value in zip(entry, obj):
                part.append(value)
        folder = root / "images" if (root / "images").is_dir() else root
        split = split_of(path.stem) or "train"
        splits.setdefault(split, []).extend(
            record(inside(root, folder / name, str(path), name), *entry)
            for name, entry in per_image.items() if name not in bad)
    if not files:
        raise DataError(f"{root}: no .csv annotation file")
    return Found("csv", class_names, splits)


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def _is_number(values: list[str]) -> bool:
    try:
        return bool(values) and all(float(v) is not None for v in values)
    except ValueError:
        return False
