"""Readers for detection annotation layouts: COCO JSON, Pascal VOC XML, YOLO txt, CSV.

Layouts (what `python -m pipeline make-shapes task=detection format=...` writes, and what
label tools export):
  coco  annotations/instances_<split>.json; images in <split>/, images/<split>/ or images/;
        bbox [x, y, w, h] in pixels; classes = categories in id order
  voc   Annotations/<id>.xml (filename, size, object/name, bndbox 1-based xmin..xmax),
        JPEGImages/; ImageSets/Main/<split>.txt; class names from labels.txt, else those found
  yolo  data.yaml (names: list or {id: name}; train/val/test: image folders), labels/<split>/*.txt
        beside images/<split>/, one "class cx cy w h" line per object (normalised); no label file
        or an empty one = a background image
  csv   <split>.csv or labels.csv (all): filename, class, x0, y0, x1, y1 per object (d2l 14.6's
        banana set; its img_name,label,xmin,ymin,xmax,ymax header reads the same); class is a name,
        or an id into labels.txt (names found are the classes when there is none); a row with only
        a filename is a background image
Splits a layout does not provide are cut from training by the loader (pipeline.tasks.detection.data).
Every problem is a DataError naming the file and the line or object. Hostile folders are refused
with one line too: an image path that leaves the data folder (absolute, `../`), duplicate ids,
values of the wrong type, files or class lists over their bounds (pipeline.tasks.detection.untrusted:
checked before reading or allocating).
"""
from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from pipeline.data.base import DataError
from pipeline.tasks.detection.splits import SPLITS, Record
from pipeline.tasks.detection.untrusted import (
    MAX_CLASSES,
    MAX_YAML_BYTES,
    class_name,
    coco_tables,
    inside,
    is_id,
    is_num,
    read_text,
)
from serving.images import is_image_file

FORMATS = ("coco", "voc", "yolo", "csv")
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


def detect_format(root: Path) -> str:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (data= takes shapes_det or a folder of images "
                        f"with annotations in {', '.join(FORMATS)} layout)")
    if list((root / "annotations").glob("*.json")) or list(root.glob("instances_*.json")):
        return "coco"
    if (root / "Annotations").is_dir():
        return "voc"
    if (root / "data.yaml").is_file():
        return "yolo"
    if list(root.glob("*.csv")):
        return "csv"
    raise DataError(f"{root}: no detection annotations found: expected annotations/instances_*.json "
                    "(COCO), Annotations/*.xml (VOC), data.yaml + labels/ (YOLO) or a .csv file")


def entry_file(source: Path) -> tuple[Path, str | None, Path | None]:
    """(data root, format, the file) when `source` is a file users point at instead of the folder:
    a YOLO data.yaml (any name ending .yaml/.yml; its folder is the root) or a COCO instances JSON
    (the folder above annotations/, or its own folder; that file alone is read, its name giving
    the split); else (source, None, None)."""
    if not source.is_file():
        return source, None, None
    if source.suffix.lower() in (".yaml", ".yml"):
        return source.parent, "yolo", source
    if source.suffix.lower() == ".json":
        root = source.parent.parent if source.parent.name == "annotations" else source.parent
        return root, "coco", source
    raise DataError(f"{source}: data= takes a folder, a YOLO data.yaml or a COCO instances .json")


def read_annotations(root: Path, fmt: str = "auto", skip_bad_files: bool = False) -> Found:
    root, implied, entry = entry_file(root)
    if implied is not None and fmt not in ("auto", implied):
        raise DataError(f"{entry}: a {implied} file, but data.format={fmt}")
    fmt = implied or (detect_format(root) if fmt == "auto" else fmt)
    if fmt not in FORMATS:
        raise DataError(f"data.format must be auto or one of {', '.join(FORMATS)}, got {fmt!r}")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    skipper = Skipper(skip_bad_files)
    readers = {"coco": read_coco, "voc": read_voc, "yolo": read_yolo, "csv": read_csv}
    found = readers[fmt](root, skipper, entry) if entry else readers[fmt](root, skipper)
    found.bad = skipper.bad
    for name, records in found.splits.items():
        if records and not any(len(r.boxes) for r in records):
            hint = " (YOLO labels go in labels/<split>/ beside images/<split>/)" if fmt == "yolo" else ""
            raise DataError(f"{root}: the {name} split has {len(records)} images but no boxes in its "
                            f"{fmt} annotations{hint}")
    return found


def _record(path: Path, rows: list[tuple[float, float, float, float]], labels: list[int],
            where: list[str], normalized: bool = False) -> Record:
    with np.errstate(over="ignore", invalid="ignore"):   # 1e308 -> inf: check_boxes names the box
        boxes = np.asarray(rows, np.float32).reshape(-1, 4)
    return Record(str(path), boxes, np.asarray(labels, np.int32), where, normalized)


# ------------------------------------------------------------------ COCO


def _find_image(root: Path, split: str, file_name: str, where: str) -> Path:
    candidates = [base / file_name for base in (root / split, root / "images" / split, root / "images", root)]
    for c in candidates:   # all checked before any is looked at: nothing outside is touched
        inside(root, c, where, file_name)
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]   # missing: the decoder names it


def _coco_image(root: Path, stem: str, path: Path, im: dict, anns: list[dict],
                cat_index: dict) -> Record:
    rows, labels, where = [], [], []
    for a in anns:
        w = f"{path.name}: annotation id {a.get('id')} (image {im['file_name']})"
        cat = a.get("category_id")
        if not is_id(cat) or cat not in cat_index:
            raise DataError(f"{w}: unknown category_id {cat}")
        box = a.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(is_num(v) for v in box):
            raise DataError(f"{w}: bbox must be [x, y, width, height] numbers, got {str(box)[:80]}")
        x, y, bw, bh = (float(v) for v in box)
        rows.append((x, y, x + bw, y + bh))
        labels.append(cat_index[cat])
        where.append(w)
    return _record(_find_image(root, stem, im["file_name"], f"{path}: image id {im['id']}"),
                   rows, labels, where)


def read_coco(root: Path, skipper: Skipper, entry: Path | None = None) -> Found:
    files = [entry] if entry else (sorted((root / "annotations").glob("*.json"))
                                   or sorted(root.glob("instances_*.json")))
    splits: dict[str, list[Record]] = {}
    class_names: tuple[str, ...] | None = None
    for path in files:
        stem = path.stem.removeprefix("instances_")
        split = split_of(stem) or "train"
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        except RecursionError:
            raise DataError(f"{path}: not valid JSON (nested too deep)") from None
        images, anns, cats = coco_tables(path, data)
        names = tuple(str(c["name"]) for c in sorted(cats, key=lambda c: c["id"]))
        if class_names is not None and names != class_names:
            raise DataError(f"{path}: categories differ from those of the other splits")
        class_names = names
        cat_index = {c["id"]: i for i, c in enumerate(sorted(cats, key=lambda c: c["id"]))}
        by_image: dict[int, list[dict]] = {im["id"]: [] for im in images}
        for a in anns:
            if not is_id(a.get("image_id")) or a["image_id"] not in by_image:
                raise DataError(f"{path}: annotation id {a.get('id')}: unknown image_id {a.get('image_id')}")
            by_image[a["image_id"]].append(a)
        records = [skipper(_coco_image, root, stem, path, im, by_image[im["id"]], cat_index)
                   for im in images]
        splits.setdefault(split, []).extend(r for r in records if r is not None)
    return Found("coco", class_names or (), splits)


# ------------------------------------------------------------------ VOC


def _class_file(root: Path) -> tuple[str, ...] | None:
    for name in ("labels.txt", "classes.txt"):
        if (root / name).is_file():
            return tuple(line.strip() for line in read_text(root / name).splitlines() if line.strip())
    return None


def _voc_object(path: Path, n: int, obj: ET.Element, names: dict[str, int]) -> tuple[tuple, int]:
    where = f"{path}: object {n}"
    name = (obj.findtext("name") or "").strip()
    if name not in names:
        raise DataError(f"{where}: unknown class {name!r}; classes: {', '.join(names)}")
    try:
        b = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (float(b.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
    except (AttributeError, TypeError, ValueError):
        raise DataError(f"{where}: bndbox needs numeric xmin, ymin, xmax, ymax") from None
    return (xmin - 1, ymin - 1, xmax, ymax), names[name]   # VOC pixels are 1-based, inclusive


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.fromstring(read_text(path))
    except ET.ParseError as e:
        raise DataError(f"{path}: unreadable label file (XML: {e})") from None


def _voc_record(root: Path, path: Path, tree: ET.Element, names: dict[str, int]) -> Record:
    rows, labels, where = [], [], []
    for n, obj in enumerate(tree.iter("object"), 1):
        box, label = _voc_object(path, n, obj, names)
        rows.append(box)
        labels.append(label)
        where.append(f"{path}: object {n}")
    file_name = tree.findtext("filename") or f"{path.stem}.jpg"
    return _record(inside(root, root / "JPEGImages" / file_name, str(path), file_name), rows, labels, where)


def read_voc(root: Path, skipper: Skipper) -> Found:
    xmls = sorted((root / "Annotations").glob("*.xml"))
    parsed = [(p, t) for p, t in ((p, skipper(_parse_xml, p)) for p in xmls) if t is not None]
    declared = _class_file(root)
    class_names = declared or tuple(sorted({(o.findtext("name") or "").strip()
                                            for _, r in parsed for o in r.iter("object")} - {""}))
    names = {n: i for i, n in enumerate(class_names)}
    records: dict[str, Record] = {}
    for path, tree in parsed:
        record = skipper(_voc_record, root, path, tree, names)
        if record is not None:
            records[path.stem] = record
    sets = root / "ImageSets" / "Main"
    splits: dict[str, list[Record]] = {}
    listed = {split_of(p.stem): p for p in sorted(sets.glob("*.txt"))} if sets.is_dir() else {}
    listed.pop(None, None)
    if not listed:
        return Found("voc", class_names, {"train": list(records.values())})
    for split, p in listed.items():
        for line_no, line in enumerate(read_text(p).splitlines(), 1):
            if line.strip():
                if line.split()[0] not in records:
                    if skipper.skip and (root / "Annotations" / f"{line.split()[0]}.xml").is_file():
                        continue   # its annotation was bad and is skipped
                    raise DataError(f"{p}:{line_no}: no annotation Annotations/{line.split()[0]}.xml")
                splits.setdefault(split, []).append(records[line.split()[0]])
    return Found("voc", class_names, splits)


# ------------------------------------------------------------------ YOLO


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
                records.append(_record(img, *found, normalized=True))
        splits[key] = records
    return Found("yolo", names, splits)


# ------------------------------------------------------------------ CSV


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
    declared = _class_file(root)
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
            _record(inside(root, folder / name, str(path), name), *entry)
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


__all__ = ["FORMATS", "SPLITS", "Found", "detect_format", "read_annotations"]
