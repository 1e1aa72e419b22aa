"""The built-in sample images: the tiny PNGs in <repo>/samples/ (made by
samples/make_samples.py from the `shapes` and `digits` data sources)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from serving.images import is_image_file


def sample_label(name: str) -> str:
    """The class a sample shows, from its file name: 'circle.png' -> 'circle', 'digit_3.png' -> '3'."""
    return Path(name).stem.removeprefix("digit_")


def samples_for(samples: dict[str, Path], labels: Sequence[str]) -> dict[str, Path]:
    """The samples whose class is one of `labels` (a model's own data set), in order."""
    known = set(labels)
    return {n: p for n, p in samples.items() if sample_label(n) in known}


def list_samples(folder: str | Path) -> dict[str, Path]:
    """name -> path of every image in `folder`, sorted by name ({} when there is none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and is_image_file(p)}
