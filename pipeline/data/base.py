"""Data types shared by every source: the `data:` config section, a Split, a Dataset, errors.

No heavy imports (no TensorFlow): a source decodes to numpy, `pipeline.data.tfdata` turns a
Split into a tf.data pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from models.options import OptionError, suggest

BUILTIN_SOURCES = ("digits", "shapes", "shapes_det")
DETECTION_SOURCES = ("shapes_det",)    # sources of boxes (task=detection), not class folders
DETECTION_FORMATS = ("auto", "coco", "voc", "yolo", "csv")
CACHE_MODES = ("auto", "memory", "none")
# the object classes the shapes generator draws (pipeline.data.shapes)
SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "crescent",
                 "arrow", "heart", "semicircle", "frame")


class DataError(OptionError):
    """A problem with the user's data (a corrupt file, an empty class folder); one line naming it.

    A ValueError through OptionError, so the CLI prints it as `error: ...` and exits 2 like any
    other mistake in what the user handed us.
    """


@dataclass(frozen=True)
class ShapesConfig:
    """The generated `shapes` source (pipeline.data.shapes)."""
    per_class: int = 1000       # images per class (train + val + test); fewer -> deep nets memorise
    size: int = 64              # native side in pixels; other model sizes are resized from it
    classes: int = 10           # the first N of SHAPE_CLASSES ...
    names: tuple[str, ...] = ()  # ... or these classes by name (e.g. disjoint sets for fine-tuning)
    noise: float = 8.0          # max std of the Gaussian pixel noise (0..255 scale)
    rotation: float = 20.0      # max object rotation in degrees (180: any angle)
    scale: tuple[float, float] = (0.25, 0.42)   # object radius range, fraction of the side

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.names) or SHAPE_CLASSES[:self.classes]

    def validate(self) -> None:
        if self.per_class < 1:
            raise OptionError(f"data.shapes.per_class must be >= 1, got {self.per_class}")
        if not 16 <= self.size <= 1024:
            raise OptionError(f"data.shapes.size must be in 16..1024, got {self.size}")
        if not 2 <= self.classes <= len(SHAPE_CLASSES):
            raise OptionError(f"data.shapes.classes must be in 2..{len(SHAPE_CLASSES)}, got {self.classes}")
        for name in self.names:
            if name not in SHAPE_CLASSES:
                raise OptionError(f"data.shapes.names: no class {name!r}{suggest(name, SHAPE_CLASSES)}; "
                                  f"classes: {', '.join(SHAPE_CLASSES)}")
        if self.names and (len(self.names) < 2 or len(set(self.names)) != len(self.names)):
            raise OptionError(f"data.shapes.names needs >= 2 distinct classes, got {self.names}")
        if not 0 <= self.noise <= 128:
            raise OptionError(f"data.shapes.noise must be in 0..128, got {self.noise}")
        if not 0 <= self.rotation <= 180:
            raise OptionError(f"data.shapes.rotation must be in 0..180 degrees, got {self.rotation}")
        if not 0.05 <= self.scale[0] <= self.scale[1] <= 0.5:
            raise OptionError(f"data.shapes.scale must be 0.05 <= min <= max <= 0.5, got {self.scale}")


@dataclass(frozen=True)
class ShapesDetConfig:
    """The generated `shapes_det` detection source (pipeline.tasks.detection.scenes): scenes of 0..N
    objects from the shapes renderer, with exact boxes."""
    images: int = 1500                 # scenes (train + val + test)
    size: int = 128                    # native side in pixels; other model sizes are resized
    classes: int = 3                   # the first N of SHAPE_CLASSES ...
    names: tuple[str, ...] = ()        # ... or these classes by name
    max_objects: int = 4               # objects per scene: 1..max (and ~5% empty backgrounds)
    object_size: tuple[float, float] = (0.1, 0.5)   # object extent range, fraction of the side
    noise: float = 8.0                 # max std of the Gaussian pixel noise (0..255 scale)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.names) or SHAPE_CLASSES[:self.classes]

    def validate(self) -> None:
        checks = [(self.images >= 1, "images must be >= 1"),
                  (32 <= self.size <= 1024, "size must be in 32..1024"),
                  (1 <= self.classes <= len(SHAPE_CLASSES), f"classes must be in 1..{len(SHAPE_CLASSES)}"),
                  (all(n in SHAPE_CLASSES for n in self.names),
                   f"names must be among {', '.join(SHAPE_CLASSES)}"),
                  (1 <= self.max_objects <= 32, "max_objects must be in 1..32"),
                  (0.03 <= self.object_size[0] <= self.object_size[1] <= 1.0,
                   "object_size must be 0.03 <= min <= max <= 1"),
                  (0 <= self.noise <= 128, "noise must be in 0..128")]
        for ok, message in checks:
            if not ok:
                raise OptionError(f"data.shapes_det.{message}")


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are split; the `data:` section of a stage config."""
    SHORTHAND: ClassVar[str] = "source"   # `data=digits` on the CLI
    source: str = "shapes"   # "digits" | "shapes" | path to an image folder (one subfolder per class)
    val_split: float = 0.15  # stratified, seeded; used when there is no explicit val folder
    test_split: float = 0.15  # used when there is no test folder and no val folder (train + val: val tests)
    seed: int = 0
    skip_bad_files: bool = False   # skip unreadable files with one warning instead of failing
    val_dir: str = ""        # explicit validation folder (one subfolder per class)
    test_dir: str = ""       # explicit test folder
    max_memory_mb: float = 1024.0  # folders whose decoded images need more are decoded lazily
    cache: str = "auto"      # lazy folders: "auto" (= none), "memory", "none" or a cache file path
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    format: str = "auto"     # detection annotations: auto, coco, voc, yolo or csv
    shapes_det: ShapesDetConfig = field(default_factory=ShapesDetConfig)

    def validate(self) -> None:
        for key in ("val_split", "test_split"):
            v = getattr(self, key)
            if not 0.0 <= v < 1.0:
                raise OptionError(f"data.{key} must be in [0, 1), got {v}")
        if self.val_split + self.test_split >= 1.0:
            raise OptionError(f"data.val_split + data.test_split must be < 1, got "
                              f"{self.val_split} + {self.test_split}")
        if not self.source:
            raise OptionError("data.source is empty; give digits, shapes or an image folder")
        if (self.val_dir or self.test_dir) and self.source in BUILTIN_SOURCES:
            raise OptionError(f"data.val_dir/test_dir need an image folder source, not {self.source!r}")
        if self.format not in DETECTION_FORMATS:
            raise OptionError(f"data.format must be one of {', '.join(DETECTION_FORMATS)}, "
                              f"got {self.format!r}{suggest(self.format, DETECTION_FORMATS)}")
        if self.max_memory_mb < 0:
            raise OptionError(f"data.max_memory_mb must be >= 0, got {self.max_memory_mb}")

    @property
    def is_folder(self) -> bool:
        return self.source not in BUILTIN_SOURCES


@dataclass
class Split:
    """One split: labels plus either decoded images or files to decode lazily."""
    labels: np.ndarray                     # int32 (N,)
    images: np.ndarray | None = None       # uint8 (N, H, W, C), decoded in memory, or
    paths: list[str] | None = None         # files decoded lazily (large folders)
    cache: str = "auto"                    # lazy files: "auto"/"none", "memory" or a cache file path
    skip_bad_files: bool = False           # lazy files: drop undecodable ones instead of failing

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a Split has exactly one of images or paths")
        n = len(self.images) if self.images is not None else len(self.paths)
        if n != len(self.labels):
            raise ValueError(f"a Split has {n} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    image_size: tuple[int, int]           # (H, W)
    channels: int
    source: str
    test_is_val: bool = False   # the folder gave train + val only: val is also the held-out test

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        parts = [f"{name} {len(s)}" for name, s in (("train", self.train), ("val", self.val),
                                                    ("test", self.test))]
        note = "; test = the folder's val split (it has no test split)" if self.test_is_val else ""
        return (f"{self.source}: {self.num_classes} classes, {', '.join(parts)} images at "
                f"{self.image_size[0]}x{self.image_size[1]}x{self.channels}{note}")
