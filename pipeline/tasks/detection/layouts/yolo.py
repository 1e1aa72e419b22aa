"""YOLO txt: data.yaml, labels/<split>/*.txt beside images/<split>/ (normalised cx cy w h)."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.data.base import DataError
from pipeline.tasks.detection.layouts.common import Found, Skipper, record
from pipeline.tasks.detection.splits import Record
from pipeline.tasks.detection.untrusted import MAX_CLASSES, MAX_YAML_BYTES, class_name, inside, read_text
from serving.images import is_image_file


def _yolo_names(path: Path, data: dict) -> tuple[str, ...]:
    names = data.get("names")
    if isinstance(names, dict):
        if sorted(names, key=str) != sorted(range(len(names)), key=str) or \
                not all(isinstance(k, int) for k in names):
            raise DataError(f"{path}: names: ids must be 0..N-1, got {', '.join(map(str, names))[:80]}")
        names = [names[i] for i in range(len(names))]
    if isinstance(names, list) and names:
        if len(names) > MAX_CLASSES:
            raise DataError(f"{path}: names: {len(names)} classes is over the limit of {MAX_CLASSES}")
        return tuple(class_name(f"{path}: names", i, n) for i, n in enumerate(names))
    raise DataError(f"{path}: needs `names:` (a list of class names or {{id: name}})")


def _yolo_labels_dir(folder: Path) -> Path:
    """images/<split> -> labels/<split>: the last path component named `images` (the YOLO rule),
    never a substring of another name (myimages_set/)."""
    parts = folder.parts
    if "images" not in parts:
        return folder
    i = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:i], "labels", *parts[i + 1:])


def _yolo_labels(path: Path, num_classes: int) -> tuple[list, list, list]:
    rows, labels, where = [], [], []
    if not path.is_file():
        return rows, labels, where   # YOLO convention: no label file = background
    for line_no, line in enumerate(read_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        w = f"{path}:{line_no}"
        try:
            if len(parts) != 5:
                raise ValueError
            cls, cx, cy, bw, bh = int(parts[0]), *(float(v) for v in parts[1:])
        except ValueError:
            raise DataError(f"{w}: expected 'class cx cy w h', got {line.strip()!r}") from None
        if not 0 <= cls < num_classes:
            raise DataError(f"{w}: class id {cls} is not in 0..{num_classes - 1} (data.yaml names)")
        rows.append((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
        labels.append(cls)
        where.append(w)
    return rows, labels, where


def read_yolo(root: Path, skipper: Skipper, entry: Path | None = None) -> Found:
    cfg_path = entry or root / "data.yaml"
    try:
        data = yaml.safe_load(read_text(cfg_path, MAX_YAML_BYTES))
    except yaml.YAMLError as e:
        raise DataError(f"{cfg_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise DataError(f"{cfg_path}: must be a mapping (path:, train:, val:, names:), "
                        f"got a {type(data).__name__}")
    names = _yolo_names(cfg_path, data)
    given = data.get("path", ".")
    if not isinstance(given, str):
        raise DataError(f"{cfg_path}: path: must be a folder name")
    base = root / given      # an absolute path: replaces root, and is refused below as outside
    splits: dict[str, list[Record]] = {}
    for key in ("train", "val", "test"):
        if not data.get(key):
            continue
        if not isinstance(data[key], str):
            raise DataError(f"{cfg_path}: {key}: must be an image folder (text)")
        folder = inside(root, base / data[key], f"{cfg_path}: {key}", Path(given) / data[key])
        if not folder.is_dir():
            raise DataError(f"{cfg_path}: {key}: {folder} is not a folder")
        label_dir = _yolo_labels_dir(folder)
        records = []
        for img in sorted(p for p in folder.iterdir() if is_image_file(p)):
            found = skipper(_yolo_labels, label_dir / f"{img.stem}.txt", len(names))
            if found is not None:
                records.append(record(img, *found, normalized=True))
        splits[key] = records
    return Found("yolo", names, splits)
