"""The default recipe: `python -m pipeline train data=<folder>` with no other option trains
something strong for that data, not a LeNet tuned for 8x8 digits.

With `model=auto` (the default) the recipe picks the family, width, input size, augmentation,
optimizer, lr, weight decay, label smoothing, epochs, early stopping and batch size from a few
facts about the data (how many training images, how large, how many classes, grey or colour):
the first rule of RULES that matches wins. Any key the user sets wins over the rule (a section
the user touches, e.g. `augment.hflip=false`, is the user's as a whole); the recipe is printed
as one line at the start and the resolved values are what config.yaml records. With an
explicit `model=NAME` no recipe applies: TrainConfig's own defaults do.

The rules come from measurements on the 2-core CPU the project is built on (README, "Default
recipes"; bench/recipes.py re-measures them): lenet_bn reaches 0.989 on digits in ~20 s, and
resnet18 at width 0.5 with standard augmentation and label smoothing is the recipe for photos.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from pipeline.augment import AugmentConfig
from pipeline.data.base import BUILTIN_SOURCES
from pipeline.data.folder import find_split_folders, scan_classes


@dataclass(frozen=True)
class DataFacts:
    """What the rules look at (computed without decoding the whole data set)."""
    kind: str          # "digits" | "shapes" | "folder"
    images: int        # training images (for a folder without a val/test split: all of them)
    classes: int
    side: int          # typical native image side in pixels (median of the shorter sides)
    channels: int      # 1 when the probed images are all grey-scale, else 3

    def describe(self) -> str:
        tone = "grey" if self.channels == 1 else "colour"
        return f"{self.images} {tone} training images of ~{self.side} px, {self.classes} classes"


@dataclass(frozen=True)
class Rule:
    name: str
    when: Callable[[DataFacts], bool]
    model: str
    options: dict[str, Any]
    input_side: int | None          # None: the data's natural input shape
    values: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields


_DIGITS_LIKE = dict(augment=AugmentConfig("light", hflip=False, fill="constant"), optimizer="adamw",
                    lr=0.02, weight_decay=0.05, label_smoothing=0.0, epochs=15, batch_size=64)
_PHOTOS = dict(augment=AugmentConfig("standard"), optimizer="adamw", lr=0.003, weight_decay=0.0005,
               label_smoothing=0.1, batch_size=32)

RULES: tuple[Rule, ...] = (
    # a few hundred small grey images (a user's folder of 25 px photos): the shapes classifier's
    # vgg11 at 32 px, light augmentation with flips, many small steps. On 200 generated grey 25 px
    # images of 2 shapes: test 0.92 where HOG + SVM scored 0.86, raw-pixel logistic regression 0.51
    # and the digits rule below 0.49 (README, "Default recipe")
    Rule("small grey folder", lambda f: f.kind == "folder" and f.channels == 1 and f.side <= 32
         and f.images < 1000, "vgg11", {"width": 0.25, "batch_norm": True}, 32,
         dict(augment=AugmentConfig("light"), optimizer="adamw", lr=0.003, weight_decay=0.0005,
              label_smoothing=0.1, epochs=80, batch_size=16)),
    # digits-sized grey images: lenet_bn, 0.989 test accuracy on digits in ~20 s
    Rule("small grey images", lambda f: f.channels == 1 and f.side <= 32, "lenet_bn", {}, None,
         _DIGITS_LIKE),
    # the generated shapes: the quickstart's classifier (0.981 test in 10 epochs, no augmentation)
    Rule("shapes", lambda f: f.kind == "shapes", "vgg11", {"width": 0.25, "batch_norm": True}, None,
         dict(augment=AugmentConfig("none"), optimizer="adamw", lr=0.003, weight_decay=0.0005,
              label_smoothing=0.0, epochs=10, batch_size=64)),
    # a few thousand photos: resnet18 w0.5 at 64 px, long enough schedule, early stopping
    Rule("small photo set", lambda f: f.images < 3000, "resnet18", {"width": 0.5}, 64,
         {**_PHOTOS, "epochs": 40, "early_stopping": 12}),
    # more photos: the same net at 96 px, fewer epochs (each sees more images)
    Rule("photo set", lambda f: True, "resnet18", {"width": 0.5}, 96,
         {**_PHOTOS, "batch_size": 64, "epochs": 25, "early_stopping": 8}),
)


def data_facts(data: Any) -> DataFacts:
    """DataFacts for a DataConfig: built-in sources from their settings, folders from a scan
    of the training files and the headers of up to 32 of them."""
    if data.source == "digits":
        return DataFacts("digits", 1797, 10, 8, 1)
    if data.source == "shapes":
        s = data.shapes
        n = len(s.names) if s.names else s.classes
        return DataFacts("shapes", s.per_class * n, n, s.size, 3)
    assert data.source not in BUILTIN_SOURCES
    folders = find_split_folders(data)
    classes = scan_classes(folders["train"], "training")
    files = [f for fs in classes.values() for f in fs]
    sides, grey = [], True
    for f in files[:: max(1, len(files) // 32)][:32]:
        try:
            with Image.open(f) as img:
                sides.append(min(img.size))
                grey &= img.mode in ("1", "L", "I", "I;16", "F", "LA")
        except OSError:
            continue   # the loader reports bad files with their names
    side = sorted(sides)[len(sides) // 2] if sides else 96
    return DataFacts("folder", len(files), len(classes), side, 1 if grey and sides else 3)


def pick(facts: DataFacts) -> Rule:
    return next(r for r in RULES if r.when(facts))


def given_keys(cfg: Any) -> frozenset[str]:
    """Keys the user set: recorded by load_config (TrainConfig.given); for a config built in
    Python, the top-level fields that differ from TrainConfig's defaults."""
    if cfg.given:
        return cfg.given
    default = type(cfg)()
    return frozenset(f.name for f in dataclasses.fields(cfg)
                     if getattr(cfg, f.name) != getattr(default, f.name))


def _touched(given: frozenset[str], key: str) -> bool:
    return any(g == key or g.startswith(key + ".") for g in given)


def fill_values(cfg: Any, values: dict[str, Any], given: frozenset[str]) -> Any:
    """cfg with a rule's TrainConfig values, except where the user set the key (or a key of its
    section); `early_stopping` is the patience."""
    changes = {key: (dataclasses.replace(cfg.early_stopping, patience=value) if key == "early_stopping"
                     else value)
               for key, value in values.items() if not _touched(given, key)}
    return dataclasses.replace(cfg, **changes)


def apply(cfg: Any, facts: DataFacts | None = None) -> tuple[Any, str | None]:
    """(cfg with the recipe's values where the user set none, the one line to print); cfg as it
    is and None when the model is not `auto`."""
    if cfg.model.name != "auto":
        return cfg, None
    facts = facts or data_facts(cfg.data)
    rule, given = pick(facts), given_keys(cfg)
    channels = facts.channels
    shape = cfg.model.input_shape or ((rule.input_side, rule.input_side, channels)
                                      if rule.input_side else None)
    model = dataclasses.replace(cfg.model, name=rule.model, input_shape=shape,
                                options={**rule.options, **cfg.model.options})
    out = fill_values(dataclasses.replace(cfg, model=model), rule.values, given)
    opts = " ".join(f"{k}={v}" for k, v in model.options.items())
    size = "x".join(map(str, shape)) if shape else "natural size"
    line = (f"recipe: {rule.name} ({facts.describe()}): {model.name} {opts} at {size}, "
            f"augment={out.augment.preset} {out.optimizer} lr={out.lr} weight_decay={out.weight_decay} "
            f"label_smoothing={out.label_smoothing} epochs={out.epochs} "
            f"early_stopping={out.early_stopping.patience} batch_size={out.batch_size} "
            "(set any of these to override; model=NAME turns the recipe off)")
    return out, line


def table() -> list[dict[str, Any]]:
    """The rules as rows, for the README and `bench/recipes.py`."""
    return [{"rule": r.name, "model": r.model, **r.options, "input": r.input_side or "natural",
             **{k: (v.preset if isinstance(v, AugmentConfig) else v) for k, v in r.values.items()}}
            for r in RULES]


__all__ = ["RULES", "DataFacts", "Rule", "apply", "data_facts", "fill_values", "given_keys", "pick", "table"]
