"""Shared preprocessing: image -> the exact input tensor a model file expects.

    decode (serving.images.load_image: EXIF, mode, resize to the contract's H x W)
    -> uint8 (N, H, W, C) -> float32 0..255
    -> (x - mean) / std        only when contract.normalization == "outside"
    -> q = round(x / scale + zero_point), clipped to the dtype range
                               only when the model input is uint8/int8 (full-int8 TFLite)
Every backend gets its input from here, so Keras, TFLite and ONNX see the same numbers.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import BinaryIO, Union

import numpy as np

from models.contract import DataContract
from serving.backends import TensorSpec
from serving.images import load_image

Source = Union[str, os.PathLike, bytes, BinaryIO]


def load_images(sources: Iterable[Source], contract: DataContract) -> np.ndarray:
    """Decode and resize to the contract: uint8 (N, H, W, C). ImageError names a bad file."""
    arrays = [load_image(s, size=contract.size, channels=contract.channels, resample=contract.resize)
              for s in sources]
    h, w = contract.size
    return np.stack(arrays) if arrays else np.zeros((0, h, w, contract.channels), np.uint8)


def check_batch(images: np.ndarray, contract: DataContract) -> np.ndarray:
    """Accept (H, W, C) or (N, H, W, C) pixels in 0..255 at the contract size; else ValueError."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(contract.input_shape):
        raise ValueError(f"images must be (N, {', '.join(map(str, contract.input_shape))}) "
                         f"pixels at the model's input size, got shape {images.shape}")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images must be numeric pixels 0..255, got dtype {images.dtype}")
    return images


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """float -> spec.dtype with q = round(x / scale + zero_point), clipped to the dtype range.
    Works in place on a float32 copy (this runs per request; numpy temporaries showed up)."""
    if not spec.scale:
        raise ValueError(f"input {spec.name!r} is {spec.dtype} but has no quantization scale")
    info = np.iinfo(spec.dtype)
    q = np.divide(x, np.float32(spec.scale), dtype=np.float32)
    q += np.float32(spec.zero_point or 0)
    np.rint(q, out=q)                      # half to even, like np.round
    np.clip(q, info.min, info.max, out=q)
    return q.astype(spec.dtype)


def to_input(images: np.ndarray, contract: DataContract, spec: TensorSpec) -> np.ndarray:
    """Pixels (N, H, W, C) 0..255 -> the model's raw input tensor in spec.dtype."""
    x = check_batch(images, contract).astype(np.float32)   # (N, H, W, C) 0..255
    if contract.normalization == "outside":
        x = (x - np.asarray(contract.mean, np.float32)) / np.asarray(contract.std, np.float32)
    if spec.quantized:
        return quantize(x, spec)
    return np.ascontiguousarray(x.astype(spec.dtype, copy=False))
