"""Resize in-memory uint8 images exactly the way serving.images.load_image does (Pillow
bilinear after the same mode conversion), so generated data and served images match."""
from __future__ import annotations

import numpy as np
from PIL import Image

from serving.images import RESAMPLE, convert_mode


def to_model_images(images: np.ndarray, size: tuple[int, int], channels: int,
                    resample: str = "bilinear") -> np.ndarray:
    """uint8 (N, h, w, c) with c in {1, 3} -> uint8 (N, H, W, channels)."""
    n = len(images)
    out = np.empty((n, size[0], size[1], channels), np.uint8)
    for i, arr in enumerate(images):
        img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr,
                              "L" if arr.shape[-1] == 1 else "RGB")
        img = convert_mode(img, channels)
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), RESAMPLE[resample])
        a = np.asarray(img, np.uint8)
        out[i] = a[..., None] if a.ndim == 2 else a
    return out
