"""Image augmentation inside tf.data, vectorised over a batch and seeded (d2l 14.1 "Image
Augmentation": flips, random resized crop, colour jitter; plus rotation/zoom/translation,
near-Gaussian pixel noise, mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on one-hot labels).

Pixels are float32 0..255 in and out (clipped). Geometric ops take one bilinear resample
per image: crop and flips alone one crop_and_resize, else one 3x3 matrix per image for
ImageProjectiveTransformV3; brightness, saturation, hue and contrast take one batched matmul.
Randomness is stateless: every batch gets a seed pair from
`tf.data.Dataset.random(seed, rerandomize_each_iteration)`, so a run is reproducible and each
epoch sees new augmentations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

from models.options import OptionError

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "light": {"hflip": True, "translate": 0.1, "zoom": 0.1, "brightness": 0.2, "contrast": 0.2},
    # the course's / torchvision's ImageNet recipe: random resized crop, flip, colour jitter
    "standard": {"hflip": True, "crop_scale": (0.25, 1.0), "crop_ratio": (3 / 4, 4 / 3),
                 "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.02},
    # SSD's recipe (Liu et al. 2016, section 2.2 "Data augmentation"): random crop or zoom-out
    # ("expand"), flip, photometric jitter; with task=detection the boxes follow
    # (pipeline.tasks.detection.augment)
    "ssd": {"hflip": True, "crop_scale": (0.3, 1.0), "crop_ratio": (0.5, 2.0), "zoom_out": 2.0,
            "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.02},
    # YOLO's recipe (Ultralytics' defaults): mosaic of 4 images with a random scale window,
    # closed for the last epochs, flip, scale jitter and HSV jitter; task=detection only
    "yolo": {"hflip": True, "mosaic": 1.0, "mosaic_scale": (0.5, 1.5), "close_mosaic": 5, "zoom": 0.25,
             "translate": 0.1, "brightness": 0.4, "saturation": 0.7, "hue": 0.015},
    "strong": {"hflip": True, "vflip": True, "crop_scale": (0.08, 1.0), "crop_ratio": (3 / 4, 4 / 3),
               "rotation": 30.0, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1,
               "noise": 10.0, "mixup": 0.2, "cutmix": 1.0},
}
OFF: dict[str, Any] = {"hflip": False, "vflip": False, "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0),
                       "rotation": 0.0, "zoom": 0.0, "translate": 0.0, "brightness": 0.0,
                       "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "noise": 0.0,
                       "mixup": 0.0, "cutmix": 0.0, "mix_prob": 1.0, "zoom_out": 1.0,
                       "mosaic": 0.0, "mosaic_scale": (0.5, 1.5), "close_mosaic": 5}
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """The `augment:` section. `augment=standard` picks a preset; a key set explicitly
    (`augment.rotation=30`) overrides it; unset keys (None) take the preset's value."""
    SHORTHAND: ClassVar[str] = "preset"
    preset: Literal["none", "light", "standard", "ssd", "yolo", "strong"] = "standard"
    hflip: bool | None = None                         # random left-right flip, p=0.5
    vflip: bool | None = None                         # random up-down flip, p=0.5
    crop_scale: tuple[float, float] | None = None     # random resized crop: area fraction range
    crop_ratio: tuple[float, float] | None = None     # ... and aspect (w/h) range, log-uniform
    rotation: float | None = None                     # max degrees, uniform in [-r, r]
    zoom: float | None = None                         # zoom factor in [1-z, 1+z]
    translate: float | None = None                    # max shift, fraction of width/height
    brightness: float | None = None                   # factor in [1-b, 1+b]
    contrast: float | None = None                     # factor in [1-c, 1+c] around the mean grey
    saturation: float | None = None                   # factor in [1-s, 1+s]
    hue: float | None = None                          # rotation in [-h, h] turns (0.5 = 180 deg)
    noise: float | None = None                        # noise std in [0, n] pixel levels (0..255)
    mixup: float | None = None                        # Beta(a, a) alpha; 0 = off
    cutmix: float | None = None                       # Beta(a, a) alpha; 0 = off
    mix_prob: float | None = None                     # chance a batch is mixed (mixup or cutmix)
    zoom_out: float | None = None                     # detection: max canvas factor (SSD expand); 1 = off
    mosaic: float | None = None                       # detection: chance of a 2x2 mosaic of 4 images; 0 = off
    mosaic_scale: tuple[float, float] | None = None   # detection: mosaic zoom range, 1 = one image's size
    close_mosaic: int | None = None                   # detection: the last N epochs train without mosaic
    fill: Literal["reflect", "constant", "nearest"] = "reflect"   # pixels moved in from outside
    # SHORTHAND/preset first; `None` fields are resolved in __post_init__.

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise OptionError(f"augment.preset: {self.preset!r} is not one of {', '.join(PRESETS)}")
        values = {**OFF, **PRESETS[self.preset]}
        for f in fields(self):
            if f.name in values and getattr(self, f.name) is None:
                object.__setattr__(self, f.name, values[f.name])

    def validate(self) -> None:
        def check(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise OptionError(f"augment.{key} {what}, got {getattr(self, key)!r}")

        lo, hi = self.crop_scale
        check(0 < lo <= hi <= 1, "crop_scale", "must be two numbers 0 < min <= max <= 1")
        lo, hi = self.crop_ratio
        check(0 < lo <= hi, "crop_ratio", "must be two numbers 0 < min <= max")
        check(0 <= self.rotation <= 180, "rotation", "must be in 0..180 degrees")
        for key in ("zoom", "translate"):
            check(0 <= getattr(self, key) < 1, key, "must be in [0, 1)")
        for key in ("brightness", "contrast", "saturation"):
            check(0 <= getattr(self, key) <= 1, key, "must be in 0..1")
        check(0 <= self.hue <= 0.5, "hue", "must be in 0..0.5 turns")
        check(0 <= self.noise <= 128, "noise", "must be in 0..128")
        check(self.mixup >= 0, "mixup", "must be >= 0 (0 = off)")
        check(self.cutmix >= 0, "cutmix", "must be >= 0 (0 = off)")
        check(0 <= self.mix_prob <= 1, "mix_prob", "must be in 0..1")
        check(1 <= self.zoom_out <= 4, "zoom_out", "must be in 1..4 (1 = off)")
        check(0 <= self.mosaic <= 1, "mosaic", "must be in 0..1 (0 = off)")
        lo, hi = self.mosaic_scale
        check(0.5 <= lo <= hi <= 4, "mosaic_scale", "must be two numbers 0.5 <= min <= max <= 4")
        check(self.close_mosaic >= 0, "close_mosaic", "must be >= 0 epochs")

    @property
    def geometric(self) -> bool:
        return bool(self.hflip or self.vflip or self.rotation or self.zoom or self.translate
                    or tuple(self.crop_scale) != (1.0, 1.0) or tuple(self.crop_ratio) != (1.0, 1.0))

    @property
    def colour(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation or self.hue)

    @property
    def mixing(self) -> bool:
        return bool((self.mixup or self.cutmix) and self.mix_prob)

    @property
    def active(self) -> bool:
        return self.geometric or self.colour or bool(self.noise) or self.mixing


# ---- ops on a batch: images float32 (B, H, W, C) 0..255, seed int (2,) ---------------------

def _tf():
    import tensorflow as tf
    return tf


def uniform(seed, n, lo, hi):
    tf = _tf()
    return tf.random.stateless_uniform([n], seed, lo, hi, dtype=tf.float32)


def crop_boxes(cfg: AugmentConfig, n, seed):
    """Random resized crop as (B,) fractions x0, y0, sx, sy of the image: area share in
    crop_scale, log-uniform aspect w/h in crop_ratio, box kept inside the image."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 3)
    area = uniform(s[0], n, *cfg.crop_scale)
    ratio = tf.exp(uniform(s[1], n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])))
    sx = tf.minimum(tf.sqrt(area * ratio), 1.0)
    sy = tf.minimum(tf.sqrt(area / ratio), 1.0)
    u = tf.random.stateless_uniform([n, 2], s[2], dtype=tf.float32)
    return u[:, 0] * (1 - sx), u[:, 1] * (1 - sy), sx, sy


def _flips(cfg: AugmentConfig, n, seed):
    """(B,) bools: flip left-right, flip up-down (each with p=0.5 when enabled)."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 2)
    no = tf.zeros([n], tf.bool)
    return (uniform(s[0], n, 0, 1) < 0.5 if cfg.hflip else no,
            uniform(s[1], n, 0, 1) < 0.5 if cfg.vflip else no)


def geometric_matrices(cfg: AugmentConfig, n, height: int, width: int, seed):
    """(B, 3, 3) float32 maps from output pixel (x, y, 1) to input pixel: crop o rotate/zoom/
    translate about the centre o flip (read right to left: flip the output first)."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 6)
    w, h = float(width), float(height)
    one, zero = tf.ones([n]), tf.zeros([n])

    def mat(rows):  # rows: 3 lists of 3 (B,) tensors -> (B, 3, 3)
        return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=1)

    hf, vf = _flips(cfg, n, s[0])
    fx, fy = tf.where(hf, -one, one), tf.where(vf, -one, one)
    # x -> (W-1) - x when flipped
    flip = mat([[fx, zero, (1 - fx) / 2 * (w - 1)], [zero, fy, (1 - fy) / 2 * (h - 1)],
                [zero, zero, one]])
    theta = uniform(s[1], n, -1, 1) * math.radians(cfg.rotation)
    zoom = uniform(s[2], n, 1 - cfg.zoom, 1 + cfg.zoom)      # >1: content magnified
    tx = uniform(s[3], n, -cfg.translate, cfg.translate) * w
    ty = uniform(s[4], n, -cfg.translate, cfg.translate) * h
    cos, sin = tf.cos(theta) / zoom, tf.sin(theta) / zoom
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # p_in = c + R(theta)/zoom (p_out - c) - t
    rzt = mat([[cos, -sin, cx - cos * cx + sin * cy - tx], [sin, cos, cy - sin * cx - cos * cy - ty],
               [zero, zero, one]])
    x0, y0, sx, sy = crop_boxes(cfg, n, s[5])
    # pixel centres: x_in + 0.5 = x0 * W + (x_out + 0.5) * sx
    crop = mat([[sx, zero, x0 * w + 0.5 * sx - 0.5], [zero, sy, y0 * h + 0.5 * sy - 0.5],
                [zero, zero, one]])
    return crop @ rzt @ flip


def apply_geometric(images, cfg: AugmentConfig, seed):
    """Crop and flips alone: one crop_and_resize (2-3x faster on CPU than a general warp);
    with rotation/zoom/translation: one ImageProjectiveTransformV3 for everything."""
    tf = _tf()
    shape = tf.shape(images)
    n = shape[0]
    if not (cfg.rotation or cfg.zoom or cfg.translate):
        s = tf.random.experimental.stateless_split(seed, 2)
        hf, vf = _flips(cfg, n, s[0])
        x0, y0, sx, sy = crop_boxes(cfg, n, s[1])
        x1, y1 = x0 + sx, y0 + sy
        # a box given right-to-left (bottom-to-top) samples the crop mirrored
        boxes = tf.stack([tf.where(vf, y1, y0), tf.where(hf, x1, x0),
                          tf.where(vf, y0, y1), tf.where(hf, x0, x1)], axis=1)   # (B, 4)
        return tf.image.crop_and_resize(images, boxes, tf.range(n), shape[1:3])
    m = geometric_matrices(cfg, n, images.shape[1], images.shape[2], seed)
    m = m / m[:, 2:3, 2:3]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.reshape(m, [-1, 9])[:, :8], output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode=cfg.fill.upper())


def colour_matrices(cfg: AugmentConfig, n, seed):
    """(B, 3, 3) float32 M with rgb_out = rgb_in @ M: brightness, saturation, hue rotation."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 3)
    eye = tf.eye(3, batch_shape=[n])
    b = uniform(s[0], n, 1 - cfg.brightness, 1 + cfg.brightness)[:, None, None]
    sat = uniform(s[1], n, 1 - cfg.saturation, 1 + cfg.saturation)[:, None, None]
    luma = tf.constant(LUMA, tf.float32)
    grey = luma[:, None] * tf.ones([1, 3])            # (3, 3): x @ grey puts luma.x in each channel
    m = b * (sat * eye + (1 - sat) * grey[None])
    if cfg.hue:
        # Hue turns as a rotation of the chroma plane of YIQ.
        k = tf.constant([[0.299, 0.596, 0.211], [0.587, -0.274, -0.523], [0.114, -0.322, 0.312]])
        phi = uniform(s[2], n, -cfg.hue, cfg.hue) * 2 * math.pi
        c, si, o, z = tf.cos(phi), tf.sin(phi), tf.ones([n]), tf.zeros([n])
        rot = tf.stack([tf.stack([o, z, z], -1), tf.stack([z, c, si], -1), tf.stack([z, -si, c], -1)], 1)
        m = m @ (k[None] @ rot @ tf.linalg.inv(k)[None])
    return m


def apply_colour(images, cfg: AugmentConfig, seed):
    """Brightness, saturation, hue, then contrast around the mean grey, as one pass:
    out = x @ (c M) + (1 - c) mean_grey(x @ M); greyscale: out = c b x + (1 - c) b mean(x)."""
    tf = _tf()
    shape = tf.shape(images)
    n, channels = shape[0], images.shape[-1]
    s = tf.random.experimental.stateless_split(seed, 2)
    c = uniform(s[1], n, 1 - cfg.contrast, 1 + cfg.contrast)                  # (B,)
    flat = tf.reshape(images, [n, -1, channels])                               # (B, H*W, C)
    mean = tf.reduce_mean(flat, axis=1)                                        # (B, C)
    if channels == 3:
        m = colour_matrices(cfg, n, s[0])                                      # (B, 3, 3)
        mean_grey = tf.linalg.matvec(m, mean, transpose_a=True) @ tf.constant(LUMA)[:, None]  # (B, 1)
        out = flat @ (c[:, None, None] * m) + ((1 - c)[:, None] * mean_grey)[:, None, :]
    else:
        b = uniform(tf.random.experimental.stateless_split(s[0], 1)[0], n,
                     1 - cfg.brightness, 1 + cfg.brightness)[:, None]           # (B, 1)
        out = flat * (c[:, None] * b)[:, None, :] + ((1 - c)[:, None] * b * mean)[:, None, :]
    return tf.reshape(out, shape)


def gaussian_noise(shape, seed):
    """Unit-variance, near-Gaussian noise: the sum of the four bytes of a random int32
    (Irwin-Hall with n=4, bounded at +-3.5 sd). Half the CPU cost of stateless_normal's
    Box-Muller, which made noise the slowest op of the pipeline."""
    tf = _tf()
    bits = tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.int32)
    byte = tf.constant(255, tf.int32)
    total = ((bits & byte) + (tf.bitwise.right_shift(bits, 8) & byte)
             + (tf.bitwise.right_shift(bits, 16) & byte) + (tf.bitwise.right_shift(bits, 24) & byte))
    # 4 uniform bytes: mean 4 * 127.5, variance 4 * (256^2 - 1) / 12
    return (tf.cast(total, tf.float32) - 510.0) * (1.0 / math.sqrt(4 * (256**2 - 1) / 12))


def apply_noise(images, cfg: AugmentConfig, seed):
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 2)
    sigma = uniform(s[0], tf.shape(images)[0], 0, cfg.noise)[:, None, None, None]
    return images + sigma * gaussian_noise(tf.shape(images), s[1])


def _beta(n, alpha: float, seed):
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 2)
    g1 = tf.random.stateless_gamma([n], s[0], alpha)
    g2 = tf.random.stateless_gamma([n], s[1], alpha)
    return g1 / tf.maximum(g1 + g2, 1e-12)


def mixup(images, labels, alpha: float, seed):
    """Each image blended with a partner from the same batch; labels blended alike."""
    tf = _tf()
    n = tf.shape(images)[0]
    s = tf.random.experimental.stateless_split(seed, 2)
    perm = tf.argsort(tf.random.stateless_uniform([n], s[0]))
    lam = _beta(n, alpha, s[1])
    li, ll = lam[:, None, None, None], lam[:, None]
    return (li * images + (1 - li) * tf.gather(images, perm),
            ll * labels + (1 - ll) * tf.gather(labels, perm))


def cutmix(images, labels, alpha: float, seed):
    """A box of a partner image pasted in; labels mixed by the pasted area."""
    tf = _tf()
    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    s = tf.random.experimental.stateless_split(seed, 3)
    perm = tf.argsort(tf.random.stateless_uniform([n], s[0]))
    cut = tf.sqrt(1.0 - _beta(n, alpha, s[1]))                        # side fraction of the box
    centre = tf.random.stateless_uniform([n, 2], s[2])
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    y0 = tf.clip_by_value(tf.round((centre[:, 0] - cut / 2) * hf), 0, hf)
    y1 = tf.clip_by_value(tf.round((centre[:, 0] + cut / 2) * hf), 0, hf)
    x0 = tf.clip_by_value(tf.round((centre[:, 1] - cut / 2) * wf), 0, wf)
    x1 = tf.clip_by_value(tf.round((centre[:, 1] + cut / 2) * wf), 0, wf)
    ys = tf.range(hf)[None, :, None]
    xs = tf.range(wf)[None, None, :]
    inside = ((ys >= y0[:, None, None]) & (ys < y1[:, None, None])
              & (xs >= x0[:, None, None]) & (xs < x1[:, None, None]))      # (B, H, W)
    mask = tf.cast(inside, images.dtype)[..., None]
    pasted = (y1 - y0) * (x1 - x0) / (hf * wf)                         # (B,) exact area share
    return (images * (1 - mask) + tf.gather(images, perm) * mask,
            (1 - pasted)[:, None] * labels + pasted[:, None] * tf.gather(labels, perm))


def mix_batch(images, labels, cfg: AugmentConfig, seed):
    """With chance mix_prob, mixup or cutmix (half each when both are on)."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 3)
    u = tf.random.stateless_uniform([2], s[0])
    if cfg.mixup and cfg.cutmix:
        mixed = tf.cond(u[1] < 0.5, lambda: cutmix(images, labels, cfg.cutmix, s[1]),
                        lambda: mixup(images, labels, cfg.mixup, s[2]))
    elif cfg.cutmix:
        mixed = cutmix(images, labels, cfg.cutmix, s[1])
    else:
        mixed = mixup(images, labels, cfg.mixup, s[2])
    if cfg.mix_prob >= 1:
        return mixed
    return tf.cond(u[0] < cfg.mix_prob, lambda: mixed, lambda: (images, labels))


def augment_batch(images, labels, cfg: AugmentConfig, seed):
    """float32 (B, H, W, C) 0..255 and one-hot (B, K) -> the same shapes, augmented, clipped."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    if cfg.geometric:
        images = apply_geometric(images, cfg, s[0])
    if cfg.colour:
        images = apply_colour(images, cfg, s[1])
    if cfg.noise:
        images = apply_noise(images, cfg, s[2])
    images = tf.clip_by_value(images, 0.0, 255.0)
    if cfg.mixing:
        images, labels = mix_batch(images, labels, cfg, s[3])
    return images, labels


def augment_dataset(ds, cfg: AugmentConfig, *, seed: int = 0):
    """Map augment_batch over a batched (images, one-hot) dataset, in parallel, seeded."""
    tf = _tf()
    if not cfg.active:
        return ds
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda xy, s: augment_batch(xy[0], xy[1], cfg, s), num_parallel_calls=tf.data.AUTOTUNE)
