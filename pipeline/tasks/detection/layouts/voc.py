"""Pascal VOC XML: Annotations/<id>.xml, JPEGImages/, ImageSets/Main/<split>.txt."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline.data.base import DataError
from pipeline.tasks.detection.layouts.common import Found, Skipper, class_file, record, split_of
from pipeline.tasks.detection.splits import Record
from pipeline.tasks.detection.untrusted import inside, read_text


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
    return record(inside(root, root / "JPEGImages" / file_name, str(path), file_name), rows, labels, where)


def read_voc(root: Path, skipper: Skipper) -> Found:
    xmls = sorted((root / "Annotations").glob("*.xml"))
    parsed = [(p, t) for p, t in ((p, skipper(_parse_xml, p)) for p in xmls) if t is not None]
    declared = class_file(root)
    class_names = declared or tuple(sorted({(o.findtext("name") or "").strip()
                                            for _, r in parsed for o in r.iter("object")} - {""}))
    names = {n: i for i, n in enumerate(class_names)}
    records: dict[str, Record] = {}
    for path, tree in parsed:
        rec = skipper(_voc_record, root, path, tree, names)
        if rec is not None:
            records[path.stem] = rec
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
