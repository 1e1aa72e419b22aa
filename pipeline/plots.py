"""PNG plots of a training run (matplotlib, Agg backend, written atomically):
curves.png (loss and accuracy, train vs val, and the learning rate per epoch) and
confusion_matrix.png (rows: true class, columns: predicted, counts and row-normalised colour).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.atomic import atomic_path


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, dest: str | os.PathLike) -> Path:
    plt = pyplot()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(dest)


def plot_curves(rows: Sequence[Mapping[str, Any]], dest: str | os.PathLike, *, title: str = "",
                best_epoch: int | None = None, metric: str = "accuracy") -> Path:
    """Loss | metric (accuracy, or a detector's map) | lr against epoch (1-based) from epoch-log rows."""
    plt = pyplot()
    epochs = [int(r["epoch"]) + 1 for r in rows]
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax, key in zip(axes[:2], ("loss", metric)):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [r.get(prefix + key, np.nan) for r in rows]
            if not np.all(np.isnan(np.asarray(values, dtype=float))):
                ax.plot(epochs, values, style, marker=".", label=f"{'val' if prefix else 'train'}")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", lw=0.8, ls=":", label=f"best (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[2].plot(epochs, [r.get("lr", np.nan) for r in rows], marker=".", color="tab:green")
    axes[2].set_title("learning rate (epoch start)")
    axes[2].set_xlabel("epoch")
    axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, dest)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], dest: str | os.PathLike, *,
                   title: str = "") -> Path:
    """matrix[i, j] = images of true class i predicted as j."""
    plt = pyplot()
    matrix = np.asarray(matrix)
    n = len(class_names)
    side = min(max(4.0, 0.55 * n + 2.0), 14.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), class_names, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return save_figure(fig, dest)
