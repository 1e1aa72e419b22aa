"""`python -m pipeline augment-preview data=shapes out=grid.png [augment.*=...]`: a PNG grid of
training images (first column) and augmented versions of them, through the same tf.data
augmentation code training uses, to check by eye that a setting is sensible.
`augment-preview task=detection data=shapes_det augment=ssd` draws the boxes as they follow."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models.options import OptionError
from pipeline.augment import AugmentConfig
from pipeline.config import save_config
from pipeline.data import DataConfig, natural_input_shape
from pipeline.tasks import TASKS, get_task


@dataclass(frozen=True)
class PreviewConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    out: str = "augment_preview.png"
    rows: int = 6                    # training images (one per class while classes last)
    cols: int = 8                    # augmented versions of each
    image_size: tuple[int, ...] = ()  # (H, W); empty: the source's natural size
    seed: int = 0
    task: str = "classification"     # a pipeline.tasks name; detection: boxes drawn

    def validate(self) -> None:
        if not 1 <= self.rows <= 64 or not 1 <= self.cols <= 64:
            raise OptionError(f"rows and cols must be in 1..64, got rows={self.rows} cols={self.cols}")
        if self.image_size and (len(self.image_size) != 2 or min(self.image_size) < 8):
            raise OptionError(f"image_size must be H,W with both >= 8, got {self.image_size}")
        if self.task not in TASKS:
            get_task(self.task)   # OptionError with the names
        if not self.out.lower().endswith(".png"):
            raise OptionError(f"out must be a .png file, got {self.out!r}")


def augment_preview(cfg: PreviewConfig) -> Path:
    """Write the grid PNG (and its resolved config as YAML beside it); return the PNG path."""
    shape = natural_input_shape(cfg.data)
    size = tuple(cfg.image_size) if cfg.image_size else shape[:2]
    task = get_task(cfg.task)
    data = task.load_data(cfg.data, (*size, shape[2]))   # before TF: fail fast
    out = Path(cfg.out)
    what = task.preview_grid(data, cfg.augment, cfg.rows, cfg.cols, cfg.seed, out)
    save_config(cfg, out.with_suffix(".yaml"))
    print(f"wrote {out} ({what})")
    return out
