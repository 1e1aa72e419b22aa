"""The built-in sample images: the tiny PNGs in <repo>/samples/ (made by
samples/make_samples.py from the `shapes` and `digits` data sources)."""
from __future__ import annotations

from pathlib import Path

from serving.images import is_image_file


def list_samples(folder: str | Path) -> dict[str, Path]:
    """name -> path of every image in `folder`, sorted by name ({} when there is none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and is_image_file(p)}
