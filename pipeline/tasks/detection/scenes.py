"""The `shapes_det` detection source: seeded scenes from the shapes renderer, with exact boxes,
and writers that put it on disk in COCO, VOC, YOLO or CSV layout (pipeline.tasks.detection.annotations).

A scene has 1..max_objects objects (about 5% have none: background images) of extent from
object_size[0] to object_size[1] of the side (log-uniform: many small ones, some half the image),
any rotation, over the renderer's clutter (gradients, blobs, lines) with Gaussian noise. Objects
may overlap a little (at most 25% of the smaller box) and may run off the border (at most ~30% of
their extent). Each box is the tight box of the painted pixels (pipeline.data.shapes.draw_object),
so it is exact, not an estimate. Scene i comes from `default_rng([seed, i])`.

    python -m pipeline make-shapes task=detection format=coco out=data/shapes_coco
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from models.atomic import atomic_path, write_json, write_text
from pipeline.data.arrays import to_model_images
from pipeline.data.base import ShapesDetConfig
from pipeline.data.shapes import draw_object, make_background
from pipeline.tasks.detection.splits import SPLITS, DetSplit, seeded_split

MAX_OVERLAP = 0.25   # of the smaller box's area


def _overlap(a: tuple, b: tuple) -> float:
    """Intersection over the smaller box's area: how much of either object the other may hide."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


def make_det_scene(cfg: ShapesDetConfig, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 (S, S, 3), int32 pixel boxes (K, 4) x0, y0, x1, y1 (x1/y1 exclusive), int32 labels (K,)."""
    s = cfg.size
    img = make_background(s, s, rng)
    n = 0 if rng.random() < 0.05 else int(rng.integers(1, cfg.max_objects + 1))
    lo, hi = np.log(cfg.object_size[0]), np.log(cfg.object_size[1])
    boxes: list[tuple[int, int, int, int]] = []
    labels: list[int] = []
    for _ in range(n):
        label = int(rng.integers(0, len(cfg.class_names)))
        for _try in range(15):
            r = float(np.exp(rng.uniform(lo, hi))) * s / 2                  # radius: half the extent
            margin = 0.4 * r                                                 # <= ~30% off the border
            cx, cy = rng.uniform(margin, s - margin, 2)
            guess = (cx - r, cy - r, cx + r, cy + r)
            if all(_overlap(guess, b) <= MAX_OVERLAP for b in boxes):
                break
        else:
            continue
        # draw into a copy: if the painted box overlaps others too much, drop the object
        trial = img.copy()
        box = draw_object(trial, cfg.class_names[label], rng, center=(cx, cy), radius=r)
        if box is None or min(box[2] - box[0], box[3] - box[1]) < 3:
            continue
        if any(_overlap(box, b) > MAX_OVERLAP for b in boxes):
            continue
        img, boxes, labels = trial, boxes + [box], labels + [label]
    if cfg.noise > 0:
        img += rng.normal(0.0, rng.uniform(0, cfg.noise), img.shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return image, np.array(boxes, np.int32).reshape(-1, 4), np.array(labels, np.int32)


def generate_scenes(cfg: ShapesDetConfig, *, seed: int = 0, size: tuple[int, int] | None = None,
                    channels: int = 3) -> DetSplit:
    """cfg.images scenes; images resized to `size` (as serving would), boxes normalised corners."""
    images = np.empty((cfg.images, cfg.size, cfg.size, 3), np.uint8)
    boxes, labels = [], []
    for i in range(cfg.images):
        images[i], b, lab = make_det_scene(cfg, np.random.default_rng([seed, i]))
        boxes.append(b.astype(np.float32) / cfg.size)
        labels.append(lab)
    size = size or (cfg.size, cfg.size)
    if images.shape[1:] != (*size, channels):
        images = to_model_images(images, size, channels)
    return DetSplit(images, boxes, labels, [f"scene{i:06d}" for i in range(cfg.images)])


# ------------------------------------------------------------------ writers


def _pixel_boxes(split: DetSplit, i: int, size: int) -> np.ndarray:
    return np.round(split.boxes[i] * size).astype(int)


def _save_png(image: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image, "RGB").save(tmp, format="PNG")


def write_coco(root: Path, parts: dict[str, DetSplit], names: tuple[str, ...], size: int) -> None:
    ann_id = 1
    for split, part in parts.items():
        images, anns = [], []
        for i in range(len(part)):
            file_name = f"{part.names[i]}.png"
            _save_png(part.images[i], root / "images" / split / file_name)
            images.append({"id": i + 1, "file_name": file_name, "width": size, "height": size})
            for (x0, y0, x1, y1), lab in zip(_pixel_boxes(part, i, size), part.labels[i]):
                anns.append({"id": ann_id, "image_id": i + 1, "category_id": int(lab) + 1,
                             "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
                             "area": int((x1 - x0) * (y1 - y0)), "iscrowd": 0})
                ann_id += 1
        write_json(root / "annotations" / f"instances_{split}.json",
                   {"images": images, "annotations": anns,
                    "categories": [{"id": c + 1, "name": n} for c, n in enumerate(names)]})


def write_voc(root: Path, parts: dict[str, DetSplit], names: tuple[str, ...], size: int) -> None:
    for split, part in parts.items():
        for i in range(len(part)):
            stem = part.names[i]
            _save_png(part.images[i], root / "JPEGImages" / f"{stem}.png")
            objects = "".join(
                f"<object><name>{names[lab]}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
                f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                for (x0, y0, x1, y1), lab in zip(_pixel_boxes(part, i, size), part.labels[i]))
            write_text(root / "Annotations" / f"{stem}.xml",
                       f"<annotation><filename>{stem}.png</filename><size><width>{size}</width>"
                       f"<height>{size}</height><depth>3</depth></size>{objects}</annotation>\n")
        write_text(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{n}\n" for n in part.names))
    write_text(root / "labels.txt", "".join(f"{n}\n" for n in names))


def write_yolo(root: Path, parts: dict[str, DetSplit], names: tuple[str, ...], size: int) -> None:
    for split, part in parts.items():
        for i in range(len(part)):
            _save_png(part.images[i], root / "images" / split / f"{part.names[i]}.png")
            lines = "".join(
                f"{lab} {(x0 + x1) / 2 / size:.6f} {(y0 + y1) / 2 / size:.6f} "
                f"{(x1 - x0) / size:.6f} {(y1 - y0) / size:.6f}\n"
                for (x0, y0, x1, y1), lab in zip(_pixel_boxes(part, i, size), part.labels[i]))
            write_text(root / "labels" / split / f"{part.names[i]}.txt", lines)   # empty: background
    write_text(root / "data.yaml", "path: .\n" + "".join(f"{s}: images/{s}\n" for s in parts)
               + "names:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))


def write_csv(root: Path, parts: dict[str, DetSplit], names: tuple[str, ...], size: int) -> None:
    for split, part in parts.items():
        rows = ["filename,class,x0,y0,x1,y1"]
        for i in range(len(part)):
            file_name = f"{part.names[i]}.png"
            _save_png(part.images[i], root / "images" / file_name)
            objs = list(zip(_pixel_boxes(part, i, size), part.labels[i]))
            rows += [f"{file_name},{names[lab]},{x0},{y0},{x1},{y1}" for (x0, y0, x1, y1), lab in objs]
            if not objs:
                rows.append(f"{file_name},,,,,")
        write_text(root / f"{split}.csv", "\n".join(rows) + "\n")
    write_text(root / "labels.txt", "".join(f"{n}\n" for n in names))   # class order, all classes


WRITERS = {"coco": write_coco, "voc": write_voc, "yolo": write_yolo, "csv": write_csv}


def write_detection(out_dir: str | os.PathLike, cfg: ShapesDetConfig, fmt: str, *, seed: int = 0,
                    val_split: float = 0.15, test_split: float = 0.15) -> Path:
    """Write shapes_det in `fmt` layout with seeded train/val/test splits; returns out_dir."""
    root = Path(out_dir)
    split = generate_scenes(cfg, seed=seed)
    idx = dict(zip(SPLITS, seeded_split(len(split), val_split, test_split, seed)))
    parts = {name: split.subset(i) for name, i in idx.items() if len(i)}
    WRITERS[fmt](root, parts, cfg.class_names, cfg.size)
    return root

