"""`python -m pipeline make-shapes`: write the generated data sets to disk, as a user's own data
would be: the shapes classes as an image folder, or (task=detection) shapes_det scenes with
their boxes in a COCO, VOC, YOLO or CSV layout."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from models.options import OptionError
from pipeline.config import save_config
from pipeline.data.base import ShapesConfig, ShapesDetConfig
from pipeline.data.shapes import write_image_folder
from pipeline.tasks.detection.scenes import write_detection

IMAGE_FORMATS = ("png", "jpg", "bmp", "webp")
DETECTION_LAYOUTS = ("coco", "voc", "yolo", "csv")


@dataclass(frozen=True)
class MakeShapesConfig:
    """`python -m pipeline make-shapes out=DIR [shapes.per_class=N ...]`, or
    `make-shapes task=detection format=coco|voc|yolo|csv out=DIR [shapes_det.images=N ...]`."""
    out: str = "data/shapes"
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    seed: int = 0
    task: Literal["classification", "detection"] = "classification"
    # classification: the image file format; detection: the annotation layout (images are PNG)
    format: Literal["png", "jpg", "bmp", "webp", "coco", "voc", "yolo", "csv"] = "png"
    shapes_det: ShapesDetConfig = field(default_factory=ShapesDetConfig)

    def validate(self) -> None:
        allowed = DETECTION_LAYOUTS if self.task == "detection" else IMAGE_FORMATS
        if self.format not in allowed and not (self.task == "detection" and self.format == "png"):
            raise OptionError(f"make-shapes task={self.task} takes format={'|'.join(allowed)}, "
                              f"got {self.format!r}")


def make_shapes(cfg: MakeShapesConfig) -> Path:
    """Write the shapes dataset as an image folder (or, task=detection, as scenes with boxes in
    an annotation layout), and the resolved config beside it."""
    if cfg.task == "detection":
        fmt = "coco" if cfg.format == "png" else cfg.format   # png: the default, not a layout
        out = write_detection(cfg.out, cfg.shapes_det, fmt, seed=cfg.seed)
        save_config(cfg, out / "shapes_det.yaml")
        print(f"wrote {cfg.shapes_det.images} scenes of {len(cfg.shapes_det.class_names)} classes "
              f"to {out} in {fmt} layout (train/val/test); train on it with "
              f"`python -m pipeline train task=detection data={out}`")
        return out
    s = cfg.shapes
    out = write_image_folder(cfg.out, s, seed=cfg.seed, suffix="." + cfg.format)
    save_config(cfg, out / "shapes.yaml")    # a loose file: image-folder loading ignores it
    k = len(s.class_names)
    print(f"wrote {s.per_class * k} images of {k} classes to {out}/<class>/")
    return out
