"""The classification preview grid (`python -m pipeline augment-preview`): training images and
augmented versions of them, each titled with its (possibly mixed) label."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.options import OptionError
from pipeline.augment import AugmentConfig, augment_batch
from pipeline.plots import pyplot, save_figure


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


def preview_grid(data, cfg: AugmentConfig, rows_wanted: int, cols: int, seed: int, out: Path) -> str:
    """PNG: `rows_wanted` training images (one per class while classes last, first column) and
    `cols` augmentations of each; returns what it shows."""
    import tensorflow as tf

    plt = pyplot()
    split = data.train
    if split.images is None:
        raise OptionError("augment-preview needs a source that fits in memory (raise data.max_memory_mb)")
    idx = _pick(split.labels, rows_wanted)
    images = tf.constant(split.images[idx], tf.float32)                       # (R, H, W, C)
    onehot = tf.one_hot(split.labels[idx], data.num_classes)
    columns = [(images.numpy(), onehot.numpy())]
    for j in range(cols):
        x, y = augment_batch(images, onehot, cfg, tf.constant([seed, j], tf.int64))
        columns.append((x.numpy(), y.numpy()))

    rows, ncols = len(idx), cols + 1
    fig, axes = plt.subplots(rows, ncols, figsize=(1.3 * ncols, 1.45 * rows), squeeze=False)
    for r in range(rows):
        for c, (x, y) in enumerate(columns):
            ax = axes[r][c]
            img = np.clip(np.round(x[r]), 0, 255).astype(np.uint8)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_title(("original: " if c == 0 else "") + _caption(y[r], data.class_names), fontsize=6)
            ax.axis("off")
    fig.suptitle(f"{data.source}: augment preset {cfg.preset!r} (seed {seed})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out)
    return f"{rows} images x {cols} augmentations"
