"""Decode any image a user hands us into the exact uint8 array a model expects.

One function for training data, serving and the demo, so every path prepares an image the
same way: Pillow decode -> first frame -> EXIF orientation -> mode conversion -> resize.
Mode conversion handles 16-bit (scaled, not clipped), palette (with transparency), RGBA/LA
(composited over white), CMYK, 1-bit and grayscale. Bad input raises ImageError with one line
naming the file and the problem. No TensorFlow import: this runs on devices too.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP"}   # MPO: multi-picture JPEG from cameras
RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
DEFAULT_MAX_PIXELS = 50_000_000

Source = Union[str, os.PathLike, bytes, BinaryIO]


class ImageError(ValueError):
    """An image that cannot be used; str() is '<name>: <problem>'."""


def _name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or "<uploaded image>"


@contextlib.contextmanager
def _image_errors(label: str) -> Iterator[None]:
    """Turn whatever Pillow raises while opening/decoding into one ImageError line."""
    try:
        yield
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image, or a format Pillow cannot read") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(f"{label}: too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{label}: truncated or corrupt image ({e})") from None


def _check_format(img: Image.Image, label: str) -> None:
    if img.format not in FORMATS:
        raise ImageError(f"{label}: unsupported image format {img.format} "
                         f"(supported: {', '.join(sorted(FORMATS - {'MPO'}))})")


def probe_image(path: str | os.PathLike) -> None:
    """Header-only check (readable, supported format) for files that are decoded later."""
    with _image_errors(str(path)), Image.open(path) as img:
        _check_format(img, str(path))


# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse)
_SWAPS_AXES = {5, 6, 7, 8}


def _draft(img: Image.Image, size: tuple[int, int]) -> None:
    """Let libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale (DCT scaling, Pillow's draft
    mode), never below `size` (H, W after EXIF orientation), so the exact resize that follows
    still works from at least the target resolution. A 12 MP photo for a 64x64 model is decoded
    at 1/8 (500x375) instead of 4000x3000. An image within 2x of `size` is decoded in full, so
    images already at model size give exactly the answers they always did."""
    h, w = size
    if img.getexif().get(0x0112) in _SWAPS_AXES:
        h, w = w, h
    img.draft(img.mode, (w, h))


def open_image(source: Source, *, name: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode fully (first frame), apply EXIF orientation; raise ImageError on any problem.
    draft=(H, W): a JPEG may be decoded at a reduced scale that stays >= (H, W) (see _draft)."""
    label = _name(source, name)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with _image_errors(label), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(source)
        _check_format(img, label)
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(f"{label}: {w}x{h} pixels is over the limit of {max_pixels:,}")
        img.seek(0)
        if draft is not None and img.format in ("JPEG", "MPO"):
            _draft(img, draft)
        img.load()
        img = ImageOps.exif_transpose(img)
    return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float grayscale -> 8-bit 'L', scaling the range instead of clipping."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        top = 65535.0
    elif img.mode == "F":
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
    else:  # "I": 16-bit data stored as 32-bit ints, or plain 8-bit values
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
    return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def convert_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> 'RGB' (channels=3) or 'L' (channels=1)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    target = "RGB" if channels == 3 else "L"
    return img if img.mode == target else img.convert(target)


def load_image(source: Source, *, size: tuple[int, int] | None, channels: int = 3,
               resample: str = "bilinear", name: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode `source` to uint8 (H, W, channels), resized to size=(H, W) unless None (a large
    JPEG is decoded at reduced scale first: open_image's draft)."""
    img = convert_mode(open_image(source, name=name, max_pixels=max_pixels, draft=size), channels)
    if size is not None and img.size != (size[1], size[0]):
        if resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {resample!r}")
        img = img.resize((size[1], size[0]), RESAMPLE[resample])
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in SUFFIXES
