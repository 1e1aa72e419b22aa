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

from pathlib import Path

from pipeline.data.base import DataError
from pipeline.tasks.detection.layouts import READERS, Found, Skipper
from pipeline.tasks.detection.splits import SPLITS

FORMATS = tuple(READERS)


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
    found = READERS[fmt](root, skipper, entry) if entry else READERS[fmt](root, skipper)
    found.bad = skipper.bad
    for name, records in found.splits.items():
        if records and not any(len(r.boxes) for r in records):
            hint = " (YOLO labels go in labels/<split>/ beside images/<split>/)" if fmt == "yolo" else ""
            raise DataError(f"{root}: the {name} split has {len(records)} images but no boxes in its "
                            f"{fmt} annotations{hint}")
    return found


__all__ = ["FORMATS", "SPLITS", "Found", "detect_format", "read_annotations"]
