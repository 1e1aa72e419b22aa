"""Seeded, stratified train/val/test split of a label vector.

Each class is shuffled on its own and cut in the same proportions, so rare classes keep
their share in every split (what sklearn's `train_test_split(stratify=...)` does, in numpy).
"""
from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, val_split: float, test_split: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (train, val, test), each sorted; every class keeps >= 1 training image."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_test = int(round(n * test_split))
        n_val = int(round(n * val_split))
        while n_test + n_val > n - 1 and (n_test or n_val):   # keep one image to train on
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64)  # type: ignore[return-value]
                 for p in parts)
