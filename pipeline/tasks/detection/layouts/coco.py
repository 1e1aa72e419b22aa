"""COCO JSON: annotations/instances_<split>.json, bbox [x, y, w, h] in pixels."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.data.base import DataError
from pipeline.tasks.detection.layouts.common import Found, Skipper, find_image, record, split_of
from pipeline.tasks.detection.splits import Record
from pipeline.tasks.detection.untrusted import coco_tables, is_id, is_num, read_text


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
    return record(find_image(root, stem, im["file_name"], f"{path}: image id {im['id']}"),
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
