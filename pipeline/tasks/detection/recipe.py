"""The detection default recipe: `python -m pipeline train task=detection data=<folder>` with no
model or training keys trains what the main job's measured settings would, at the data's own size.

The facts (DetFacts) come from the annotations and the headers of up to 32 images, without
decoding the data set: training images, classes, native image size, objects per image, object
size. The first rule of RULES that matches gives the detector and its settings; then

- input size: the data's median native size rounded UP to a multiple of 32 (the coarsest stride
  the detectors use), never smaller than the data's unless the user sets model.input_shape;
- epochs: enough optimizer steps for small folders, ceil(TARGET_STEPS / steps per epoch) within
  the rule's [min, max] (the main job's 1,050 scenes at batch 8 take 12 epochs = ~1,600 steps;
  200 images at batch 8 need ~40 epochs = 1,000 steps to reach the same mAP).

Every key the user sets wins (pipeline.recipes.fill_values, as for classification). The rules come
from measurements on the 2-core CPU (README, "Detection recipe"; bench/recipes.py prints them).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.augment import AugmentConfig
from pipeline.optim import ScheduleConfig
from pipeline.recipes import fill_values, given_keys
from pipeline.tasks.detection.annotations import read_annotations

DETECTOR = "yolo"       # the detector family every rule trains (one named value)
TARGET_STEPS = 1200     # optimizer steps a run should get at least (epochs = this / steps per epoch)
STRIDE = 32             # input sides are rounded up to a multiple of this


@dataclass(frozen=True)
class DetFacts:
    """What the detection rules look at."""
    images: int                    # training images (a folder without val/test: all of them)
    classes: int
    size: tuple[int, int]          # median native (height, width) in pixels
    objects: float                 # mean objects per training image
    object_size: float             # median object side sqrt(w * h), as a fraction of the image side

    def describe(self) -> str:
        return (f"{self.images} training images of ~{self.size[1]}x{self.size[0]} px, {self.classes} "
                f"classes, {self.objects:.1f} objects/image of ~{100 * self.object_size:.0f}% of the side")


@dataclass(frozen=True)
class DetRule:
    name: str
    when: Any                              # DetFacts -> bool
    options: dict[str, Any]                # detector options (backbone, width, ...)
    epochs: tuple[int, int]                # min, max epochs (TARGET_STEPS decides between them)
    values: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields


# The main job's detector step (configs/quickstart.yaml `detector:`): yolo resnet18 w0.25, batch 16,
# AdamW lr 0.01, cls_weight 1.0 (test mAP@.5 0.963 / mAP 0.798 on shapes_det, where the SSD gave
# 0.698 / 0.506 and TrainConfig's classification defaults 0.026 on a 200-image YOLO folder).
_MAIN_JOB = dict(augment=AugmentConfig("light"), optimizer="adamw", lr=0.01, weight_decay=0.0005,
                 schedule=ScheduleConfig("cosine", warmup_epochs=1.0), label_smoothing=0.0,
                 batch_size=16, early_stopping=0)

RULES: tuple[DetRule, ...] = (
    DetRule("detection", lambda f: True, {"backbone": "resnet18", "width": 0.25}, (12, 50), _MAIN_JOB),
)


def pick(facts: DetFacts) -> DetRule:
    return next(r for r in RULES if r.when(facts))


def _round_up(side: float) -> int:
    return int(max(STRIDE, math.ceil(side / STRIDE) * STRIDE))


def input_side(facts: DetFacts) -> tuple[int, int]:
    """The model input (H, W): the data's size rounded up to a multiple of STRIDE."""
    return _round_up(facts.size[0]), _round_up(facts.size[1])


def epochs_for(facts: DetFacts, rule: DetRule, batch_size: int) -> int:
    steps = max(1, math.ceil(facts.images / batch_size))
    lo, hi = rule.epochs
    return int(min(hi, max(lo, math.ceil(TARGET_STEPS / steps))))


def data_facts(data: Any) -> DetFacts:
    """DetFacts of a DataConfig: shapes_det from its settings, a folder from its annotations."""
    if data.source == "shapes_det":
        s = data.shapes_det
        n = int(round(s.images * (1 - data.val_split - data.test_split)))
        return DetFacts(n, len(s.class_names), (s.size, s.size), 0.95 * (1 + s.max_objects) / 2,
                        float(np.mean(s.object_size)))
    found = read_annotations(Path(data.source), data.format, skip_bad_files=True)
    train = found.splits.get("train", [])
    # what the loader keeps for training: a val split given means no cut (val also tests)
    kept = 1.0 if "val" in found.splits else (
        1 - data.val_split - (0 if "test" in found.splits else data.test_split))
    sizes, rel = [], []
    for rec in train[:: max(1, len(train) // 32)][:32]:
        try:
            with Image.open(rec.path) as img:
                w, h = img.size
        except OSError:
            continue   # the loader reports bad files with their names
        sizes.append((h, w))
        b = rec.boxes.reshape(-1, 4).astype(np.float64)
        if not rec.normalized:
            b = b / (w, h, w, h)
        rel += list(np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, 1) * np.clip(b[:, 3] - b[:, 1], 0, 1)))
    size = tuple(int(v) for v in np.median(sizes, axis=0)) if sizes else (128, 128)
    objects = float(np.mean([len(r.labels) for r in train])) if train else 0.0
    return DetFacts(int(round(len(train) * kept)), len(found.class_names), size, objects,
                    float(np.median(rel)) if rel else 0.0)


def apply(cfg: Any, facts: DetFacts | None = None) -> tuple[Any, str | None]:
    """(cfg with the rule's values where the user set none, the line to print). With model=NAME
    only the input size is filled in (the data's, when model.input_shape is not set)."""
    if cfg.model.name != "auto":
        if cfg.model.input_shape or cfg.data.source == "shapes_det":   # the user's, or the native size
            return cfg, None
        side = input_side(facts or data_facts(cfg.data))   # never shrink the data silently
        return (dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_shape=(*side, 3))),
                f"input: {side[0]}x{side[1]}x3, the data's size (model.input_shape= to change)")
    facts = facts or data_facts(cfg.data)
    rule, given = pick(facts), given_keys(cfg)
    shape = cfg.model.input_shape or (*input_side(facts), 3)
    model = dataclasses.replace(cfg.model, name=DETECTOR, input_shape=tuple(shape),
                                options={**rule.options, **cfg.model.options})
    out = fill_values(dataclasses.replace(cfg, model=model), rule.values, given)
    if "epochs" not in given:
        out = dataclasses.replace(out, epochs=epochs_for(facts, rule, out.batch_size))
    opts = " ".join(f"{k}={v}" for k, v in model.options.items())
    line = (f"recipe: {rule.name} ({facts.describe()}): {model.name} {opts} at "
            f"{'x'.join(map(str, shape))}, augment={out.augment.preset} {out.optimizer} lr={out.lr} "
            f"weight_decay={out.weight_decay} epochs={out.epochs} batch_size={out.batch_size} "
            "(set any of these to override; model=NAME turns the recipe off)")
    return out, line


def table() -> list[dict[str, Any]]:
    """The rules as rows, for the README and bench/recipes.py."""
    return [{"rule": r.name, "model": DETECTOR, **r.options, "input": "data's size, up to x32",
             "epochs": f"{TARGET_STEPS} steps in {r.epochs[0]}..{r.epochs[1]}",
             **{k: (v.preset if isinstance(v, AugmentConfig) else v) for k, v in r.values.items()
                if k != "schedule"}} for r in RULES]


__all__ = ["DETECTOR", "RULES", "DetFacts", "apply", "data_facts", "input_side", "pick", "table"]
