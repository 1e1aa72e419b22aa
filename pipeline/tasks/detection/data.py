"""Detection data: splits of images with boxes, decoding, checks, and the `task=detection` loader.

    from pipeline.tasks.detection.data import load_detection_dataset
    ds = load_detection_dataset(DataConfig("shapes_det"), image_size=(128, 128), channels=3)
    ds.train.images (N, H, W, C) uint8, ds.train.boxes[i] (K, 4) float32, ds.train.labels[i] (K,)

Sources: `shapes_det` (pipeline.tasks.detection.scenes, generated, exact boxes) or a folder in COCO JSON,
Pascal VOC XML, YOLO txt or CSV layout (pipeline.tasks.detection.annotations; auto-detected, or
`data.format=`). Boxes are normalised corners (x0, y0, x1, y1 in 0..1 of the image's width and
height, d2l 14.3's corner format, keras' "rel_xyxy"), so resizing an image to the model input
(plain resize, as serving does) leaves them unchanged. Every file is decoded by serving.images
(Pillow), like classification data. A bad annotation stops loading with one line naming the file
and the line or object; `data.skip_bad_files=true` skips that image with one warning and a count.
An image with no objects (an empty label file) is a valid background image.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.data.base import DataConfig, DataError
from pipeline.data.folder import BadFilesWarning
from pipeline.tasks.detection.annotations import read_annotations
from pipeline.tasks.detection.scenes import generate_scenes
from pipeline.tasks.detection.splits import DetDataset, DetSplit, Record, seeded_split
from serving.images import RESAMPLE, ImageError, convert_mode, open_image

BOX_TOLERANCE = 1.0   # pixels a box may reach past the image edge (rounding in label tools); clipped


def check_boxes(record: Record, width: int, height: int) -> np.ndarray:
    """Pixel boxes of a record -> normalised corners; DataError naming the box on a bad one."""
    boxes = record.boxes.astype(np.float64).reshape(-1, 4)
    if record.normalized:
        with np.errstate(over="ignore", invalid="ignore"):   # 1e308 * width -> inf, named below
            boxes = boxes * (width, height, width, height)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        where = record.where[i] if i < len(record.where) else record.path
        if not np.isfinite([x0, y0, x1, y1]).all():
            raise DataError(f"{where}: box has a non-finite coordinate")
        if x1 <= x0 or y1 <= y0:
            raise DataError(f"{where}: empty box (x1 <= x0 or y1 <= y0): {x0:g}, {y0:g}, {x1:g}, {y1:g}")
        t = BOX_TOLERANCE
        if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
            raise DataError(f"{where}: box {x0:g}, {y0:g}, {x1:g}, {y1:g} is outside the "
                            f"{width}x{height} image")
    boxes = np.clip(boxes, 0, (width, height, width, height)) / (width, height, width, height)
    return boxes.astype(np.float32)


def decode_records(records: list[Record], size: tuple[int, int], channels: int,
                   skip_bad_files: bool, bad: list[str]) -> DetSplit:
    """Decode and check every record (threads: Pillow releases the GIL); bad ones raise or skip."""
    out = np.empty((len(records), size[0], size[1], channels), np.uint8)
    boxes: list[np.ndarray | None] = [None] * len(records)

    def one(i: int) -> str | None:
        rec = records[i]
        try:
            img = open_image(rec.path)
            boxes[i] = check_boxes(rec, *img.size)
            img = convert_mode(img, channels)
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), RESAMPLE["bilinear"])
            arr = np.asarray(img, np.uint8)
            out[i] = arr[..., None] if arr.ndim == 2 else arr
        except (ImageError, DataError) as e:
            return str(e)
        return None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        errors = list(pool.map(one, range(len(records))))
    failed = [e for e in errors if e is not None]
    if failed and not skip_bad_files:
        raise DataError(failed[0])
    bad.extend(failed)
    keep = [i for i, e in enumerate(errors) if e is None]
    return DetSplit(out[keep], [boxes[i] for i in keep], [records[i].labels for i in keep],
                    [records[i].path for i in keep])


def _empty(size: tuple[int, int], channels: int) -> DetSplit:
    return DetSplit(np.zeros((0, *size, channels), np.uint8), [], [], [])


def load_detection_dataset(cfg: DataConfig, *, image_size: tuple[int, int], channels: int) -> DetDataset:
    """Load and split a detection source; images uint8 at image_size, boxes normalised corners."""
    size = (int(image_size[0]), int(image_size[1]))
    if cfg.source == "shapes_det":
        split = generate_scenes(cfg.shapes_det, seed=cfg.seed, size=size, channels=channels)
        tr, va, te = seeded_split(len(split), cfg.val_split, cfg.test_split, cfg.seed)
        return DetDataset(split.subset(tr), split.subset(va), split.subset(te),
                          cfg.shapes_det.class_names, size, channels, "shapes_det", "generated")
    found = read_annotations(Path(cfg.source), cfg.format, cfg.skip_bad_files)
    bad = list(found.bad)
    splits = {name: decode_records(recs, size, channels, cfg.skip_bad_files, bad)
              for name, recs in found.splits.items()}
    if bad:
        total = len(bad) + sum(len(s) for s in splits.values())
        warnings.warn(f"skipped {len(bad)} of {total} images with bad files or annotations "
                      f"(data.skip_bad_files=true); first: {bad[0]}", BadFilesWarning, stacklevel=2)
    if "train" not in splits or len(splits["train"]) == 0:
        raise DataError(f"{cfg.source}: no training images found ({found.format} layout)")
    train = splits["train"]
    # train + val only: val is the held-out test split too (as YOLO tools report val), rather
    # than taking training images the folder's author meant for training
    test_is_val = "val" in splits and "test" not in splits and len(splits["val"]) > 0
    if test_is_val:
        splits["test"] = splits["val"]
    missing = [s for s in ("val", "test") if s not in splits]
    if missing:   # cut what the folder does not provide from training, seeded
        tr, va, te = seeded_split(len(train), cfg.val_split if "val" in missing else 0.0,
                                  cfg.test_split if "test" in missing else 0.0, cfg.seed)
        splits.setdefault("val", train.subset(va))
        splits.setdefault("test", train.subset(te))
        train = train.subset(tr)
    return DetDataset(train, splits.get("val") or _empty(size, channels),
                      splits.get("test") or _empty(size, channels), found.class_names, size,
                      channels, cfg.source, found.format, test_is_val)
