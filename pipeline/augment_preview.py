"""`python -m pipeline augment-preview data=shapes out=grid.png [augment.*=...]`: a PNG grid of
training images (first column) and augmented versions of them, through the same tf.data
augmentation code training uses, to check by eye that a setting is sensible.
`augment-preview task=detection data=shapes_det augment=ssd` draws the boxes as they follow."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from models.atomic import atomic_path
from models.options import OptionError
from pipeline.augment import AugmentConfig
from pipeline.data import DataConfig, load_dataset, natural_input_shape


@dataclass(frozen=True)
class PreviewConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    out: str = "augment_preview.png"
    rows: int = 6                    # training images (one per class while classes last)
    cols: int = 8                    # augmented versions of each
    image_size: tuple[int, ...] = ()  # (H, W); empty: the source's natural size
    seed: int = 0
    task: Literal["classification", "detection"] = "classification"   # detection: boxes drawn

    def validate(self) -> None:
        if not 1 <= self.rows <= 64 or not 1 <= self.cols <= 64:
            raise OptionError(f"rows and cols must be in 1..64, got rows={self.rows} cols={self.cols}")
        if self.image_size and (len(self.image_size) != 2 or min(self.image_size) < 8):
            raise OptionError(f"image_size must be H,W with both >= 8, got {self.image_size}")
        if not self.out.lower().endswith(".png"):
            raise OptionError(f"out must be a .png file, got {self.out!r}")


def _pick(labels: np.ndarray, n: int) -> np.ndarray:
    """n indices, round-robin over classes so the grid shows as many classes as it can."""
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < n and any(by_class):
        for idx in by_class:
            if idx and len(picked) < n:
                picked.append(idx.pop(0))
    return np.array(picked)


def _caption(onehot: np.ndarray, names: tuple[str, ...]) -> str:
    top = np.argsort(onehot)[::-1][:2]
    if onehot[top[1]] < 0.01:
        return names[top[0]]
    return " / ".join(f"{names[i]} {onehot[i]:.2f}" for i in top)


def augment_preview(cfg: PreviewConfig) -> Path:
    """Write the grid PNG (and its resolved config as YAML beside it); return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.config import save_config

    shape = natural_input_shape(cfg.data)
    size = tuple(cfg.image_size) if cfg.image_size else shape[:2]
    if cfg.task == "detection":
        from pipeline.augment_det import preview_grid
        from pipeline.data.detection import load_detection_dataset

        data = load_detection_dataset(cfg.data, image_size=size, channels=shape[2])
        out = Path(cfg.out)
        preview_grid(data, cfg.augment, cfg.rows, cfg.cols, cfg.seed, out)
        save_config(cfg, out.with_suffix(".yaml"))
        print(f"wrote {out} ({min(cfg.rows, len(data.train))} scenes x {cfg.cols} augmentations, "
              "boxes drawn)")
        return out
    data = load_dataset(cfg.data, image_size=size, channels=shape[2])   # before TF: fail fast

    import tensorflow as tf

    from pipeline.augment import augment_batch
    split = data.train
    if split.images is None:
        raise OptionError("augment-preview needs a source that fits in memory (raise data.max_memory_mb)")
    idx = _pick(split.labels, cfg.rows)
    images = tf.constant(split.images[idx], tf.float32)                       # (R, H, W, C)
    onehot = tf.one_hot(split.labels[idx], data.num_classes)
    columns = [(images.numpy(), onehot.numpy())]
    for j in range(cfg.cols):
        x, y = augment_batch(images, onehot, cfg.augment, tf.constant([cfg.seed, j], tf.int64))
        columns.append((x.numpy(), y.numpy()))

    rows, cols = len(idx), cfg.cols + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    for r in range(rows):
        for c, (x, y) in enumerate(columns):
            ax = axes[r][c]
            img = np.clip(np.round(x[r]), 0, 255).astype(np.uint8)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_title(("original: " if c == 0 else "") + _caption(y[r], data.class_names), fontsize=6)
            ax.axis("off")
    fig.suptitle(f"{data.source}: augment preset {cfg.augment.preset!r} (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    out = Path(cfg.out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    save_config(cfg, out.with_suffix(".yaml"))
    print(f"wrote {out} ({rows} images x {cfg.cols} augmentations)")
    return out
