"""The `digits` source: scikit-learn's copy of the UCI handwritten digits (1,797 real 8x8
images, 10 classes, values 0..16), shipped inside the sklearn wheel, so it works offline.

Scaled to 0..255 and resized to the model input with Pillow, like every served image.
"""
from __future__ import annotations

import numpy as np

from pipeline.data.arrays import to_model_images

CLASS_NAMES = tuple(str(d) for d in range(10))


def load_digits_arrays(image_size: tuple[int, int], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (1797, H, W, channels) images and int32 (1797,) labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # (1797, 8, 8) float 0..16 -> uint8 0..255 with a channel axis
    raw = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return to_model_images(raw, image_size, channels), bunch.target.astype(np.int32)
