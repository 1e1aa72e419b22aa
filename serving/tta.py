"""Test-time augmentation as the course answers it (d2l 14.1; AlexNet's and Inception's
multi-crop evaluation): run the model on several views of each image and average the
probabilities.

    none       the image itself (1 view)
    flip       the image and its horizontal mirror (2 views)
    flip_crop  five crops (centre and four corners, CROP of each side) zoomed back to the input
               size, each also mirrored (10 views; the "10-crop" of Krizhevsky et al. 2012)

Views are made from the pixels at the model's input size (uint8 (N, H, W, C)), so TTA works the
same for .tflite, .onnx and .keras files and for predict() on arrays. Mirroring is only right
when the classes are mirror-symmetric (photos of objects: yes; digits or text: no), which is
why it is opt-in (`tta=flip`). Pure numpy + Pillow: runs on a device.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from models.options import suggest

MODES = ("none", "flip", "flip_crop")
CROP = 0.875            # 224 of 256, the classic ratio
VIEWS = {"none": 1, "flip": 2, "flip_crop": 10}


def check_mode(mode: str) -> str:
    if mode not in MODES:

        raise ValueError(f"tta: {mode!r} is not one of {', '.join(MODES)}{suggest(mode, MODES)}")
    return mode


def _zoom(images: np.ndarray, top: int, left: int, ch: int, cw: int) -> np.ndarray:
    """Crop (N, H, W, C) at (top, left) to (ch, cw) and resize back to (H, W), bilinear."""
    n, h, w, c = images.shape
    out = np.empty_like(images)
    for i in range(n):
        crop = images[i, top:top + ch, left:left + cw]
        img = Image.fromarray(crop[..., 0] if c == 1 else crop)
        out[i] = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR)).reshape(h, w, c)
    return out


def views(images: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of a uint8 batch (N, H, W, C): a list of VIEWS[mode] batches of that shape."""
    check_mode(mode)
    images = np.asarray(images)
    if mode == "none":
        return [images]
    if mode == "flip":
        return [images, images[:, :, ::-1]]
    _, h, w, _ = images.shape
    ch, cw = max(1, round(h * CROP)), max(1, round(w * CROP))
    corners = [((h - ch) // 2, (w - cw) // 2), (0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw)]
    crops = [_zoom(images, t, left, ch, cw) for t, left in corners]
    return [v for crop in crops for v in (crop, crop[:, :, ::-1])]


def average(probs: list[np.ndarray]) -> np.ndarray:
    """Mean of the per-view probabilities (float32 (N, K) each)."""
    return np.mean(np.stack(probs), axis=0).astype(np.float32)
