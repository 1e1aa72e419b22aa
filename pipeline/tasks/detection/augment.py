"""Box-aware augmentation for detection, vectorised over a batch and seeded (d2l 14.1's
augmentations made box-aware; SSD, Liu et al. 2016, section 2.2 "Data augmentation").

Every geometric change is one sampling window per image in normalised image coordinates:
a random crop (area share in augment.crop_scale, aspect in crop_ratio) or, with probability 1/2
when augment.zoom_out > 1, a zoom-out (SSD's "expand": the image placed at a random spot of a
canvas up to zoom_out times larger, filled with grey), then scale jitter (augment.zoom) and shift
(augment.translate). One `tf.image.crop_and_resize` resamples the window (mirrored for flips) and
the same affine map moves the boxes: b' = (b - window_origin) / window_size, x -> 1 - x when
flipped. Boxes are clipped to the image; a box that keeps less than MIN_VISIBLE of its area is
dropped (label -1), as SSD drops ground truth whose centre leaves the patch. Photometric jitter
and noise are those of pipeline.augment. Rotation, mixup and CutMix are refused: axis-aligned
boxes do not follow them exactly.

Mosaic (YOLOv4, Bochkovskiy et al. 2020, section 3.3; Ultralytics' default): with probability
augment.mosaic an image is replaced by four images of its batch on a 2x2 canvas (itself top
left), and one random window of the canvas (zoom in augment.mosaic_scale: 1 = one image's size,
0.5 = the whole canvas) that always holds the point where the four meet is resampled to the
output size; its boxes are those of the four, mapped the same way, clipped to the window and
dropped when less than MIN_VISIBLE of them stays in view or a side is under MIN_SIDE pixels. The
other augmentations then apply on top. A `mosaic_on` boolean (a tf.Variable that MosaicPhase sets
each epoch) switches it off for the last augment.close_mosaic epochs. With mosaic on, every batch
has 4M box rows (padding -1), so shapes stay fixed when it switches off.

Shapes: images float32 (B, H, W, C) 0..255, boxes float32 (B, M, 4) normalised corners,
labels int32 (B, M) with -1 for padding rows.
"""
from __future__ import annotations

from models.options import OptionError
from pipeline.augment import AugmentConfig, apply_colour, apply_noise, crop_boxes, uniform
from pipeline.plots import pyplot, save_figure

MIN_VISIBLE = 0.4   # share of a box's area that must stay in the image for it to be kept
MIN_SIDE = 2.0      # pixels: a mosaic box narrower or lower than this after the window is dropped
FILL = 124.0        # zoom-out canvas grey (the mean of ImageNet's mean, 0..255)


def check_detection_augment(cfg: AugmentConfig) -> None:
    for key in ("rotation", "mixup", "cutmix"):
        if getattr(cfg, key):
            raise OptionError(f"augment.{key}={getattr(cfg, key)} is not supported with task=detection "
                              f"(boxes cannot follow it exactly); set augment.{key}=0 or use augment=ssd")


def _tf():
    import tensorflow as tf
    return tf


def windows(cfg: AugmentConfig, n, seed):
    """(B, 4) x0, y0, x1, y1 sampling windows in normalised input coordinates (may exceed 0..1)."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 6)
    x0, y0, sx, sy = crop_boxes(cfg, n, s[0])                           # inside the image
    if cfg.zoom_out > 1:
        f = uniform(s[1], n, 1.0, cfg.zoom_out)                         # canvas / image side
        u = tf.random.stateless_uniform([n, 2], s[2])
        zoomed = uniform(s[3], n, 0, 1) < 0.5
        x0 = tf.where(zoomed, -u[:, 0] * (f - 1), x0)
        y0 = tf.where(zoomed, -u[:, 1] * (f - 1), y0)
        sx, sy = tf.where(zoomed, f, sx), tf.where(zoomed, f, sy)
    if cfg.zoom:   # scale jitter about the window's centre: > 1 magnifies
        z = uniform(s[4], n, 1 - cfg.zoom, 1 + cfg.zoom)
        x0, y0 = x0 + sx * (1 - 1 / z) / 2, y0 + sy * (1 - 1 / z) / 2
        sx, sy = sx / z, sy / z
    if cfg.translate:
        t = tf.random.stateless_uniform([n, 2], s[5], -cfg.translate, cfg.translate)
        x0, y0 = x0 - t[:, 0] * sx, y0 - t[:, 1] * sy
    return tf.stack([x0, y0, x0 + sx, y0 + sy], axis=1)


def _edges_to_crop(lo, hi, size: int, out: int):
    """crop_and_resize samples lo' * (size - 1) + j * (hi' - lo') * (size - 1) / (out - 1); pick
    lo', hi' so output pixel centre j reads input position lo * size + (j + 0.5) * (hi - lo) *
    size / out (pixel edges at integers), i.e. the window's edges land on the output's edges."""
    step = (hi - lo) * size / out
    first = lo * size - 0.5 + 0.5 * step
    last = first + (out - 1) * step
    d = float(max(size - 1, 1))
    return first / d, last / d


def transform_boxes(boxes, labels, win, hflip, vflip, min_side=(0.0, 0.0)):
    """Boxes (B, M, 4) through windows (B, 4) and flips (B,) -> clipped boxes, labels (-1 dropped);
    min_side: (x, y) smallest kept side, normalised."""
    tf = _tf()
    origin = tf.concat([win[:, :2], win[:, :2]], axis=1)[:, None, :]        # (B, 1, 4)
    scale = tf.concat([win[:, 2:] - win[:, :2]] * 2, axis=1)[:, None, :]    # (B, 1, 4)
    b = (boxes - origin) / scale
    x0, y0, x1, y1 = tf.unstack(b, axis=-1)                                  # (B, M) each
    hf, vf = hflip[:, None], vflip[:, None]
    x0, x1 = tf.where(hf, 1 - x1, x0), tf.where(hf, 1 - x0, x1)
    y0, y1 = tf.where(vf, 1 - y1, y0), tf.where(vf, 1 - y0, y1)
    full = tf.maximum(x1 - x0, 0) * tf.maximum(y1 - y0, 0)
    c = tf.clip_by_value(tf.stack([x0, y0, x1, y1], axis=-1), 0.0, 1.0)    # (B, M, 4)
    kept_area = tf.maximum(c[..., 2] - c[..., 0], 0) * tf.maximum(c[..., 3] - c[..., 1], 0)
    keep = ((labels >= 0) & (kept_area > 0) & (kept_area >= MIN_VISIBLE * full)
            & (c[..., 2] - c[..., 0] >= min_side[0]) & (c[..., 3] - c[..., 1] >= min_side[1]))
    return tf.where(keep[..., None], c, 0.0), tf.where(keep, labels, -1)


def mosaic_windows(cfg: AugmentConfig, n, seed):
    """(B, 4) x0, y0, x1, y1 windows in normalised canvas coordinates: side 0.5 / zoom (zoom in
    mosaic_scale), placed uniformly among the windows that hold the canvas centre."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 2)
    side = tf.minimum(0.5 / uniform(s[0], n, *cfg.mosaic_scale), 1.0)[:, None]     # (B, 1)
    lo, hi = tf.maximum(0.0, 0.5 - side), tf.minimum(0.5, 1.0 - side)
    x0y0 = lo + tf.random.stateless_uniform([n, 2], s[1]) * (hi - lo)              # (B, 2)
    return tf.concat([x0y0, x0y0 + side], axis=1)


def mosaic_batch(images, boxes, labels, cfg: AugmentConfig, seed):
    """Every image of the batch as a mosaic with three random others of the batch (see the
    module docstring): (B, H, W, C), (B, 4M, 4), (B, 4M)."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 2)
    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    others = tf.random.stateless_uniform([n, 3], s[0], 0, n, dtype=tf.int32)
    src = tf.concat([tf.range(n)[:, None], others], axis=1)                       # (B, 4)
    quad = tf.gather(images, src)                                                  # (B, 4, H, W, C)
    canvas = tf.concat([tf.concat([quad[:, 0], quad[:, 1]], axis=2),
                        tf.concat([quad[:, 2], quad[:, 3]], axis=2)], axis=1)      # (B, 2H, 2W, C)
    m = boxes.shape[1]
    offset = tf.constant([[0, 0, 0, 0], [.5, 0, .5, 0], [0, .5, 0, .5], [.5, .5, .5, .5]], tf.float32)
    b = tf.gather(boxes, src) * 0.5 + offset[None, :, None, :]                     # (B, 4, M, 4)
    b = tf.reshape(b, [n, 4 * m, 4])
    lab = tf.reshape(tf.gather(labels, src), [n, 4 * m])
    win = mosaic_windows(cfg, n, s[1])                                             # (B, 4)
    cx0, cx1 = _edges_to_crop(win[:, 0], win[:, 2], 2 * w, w)
    cy0, cy1 = _edges_to_crop(win[:, 1], win[:, 3], 2 * h, h)
    out = tf.image.crop_and_resize(canvas, tf.stack([cy0, cx0, cy1, cx1], axis=1), tf.range(n), [h, w])
    no = tf.zeros([n], tf.bool)
    b, lab = transform_boxes(b, lab, win, no, no, (MIN_SIDE / w, MIN_SIDE / h))
    return out, b, lab


def apply_mosaic(images, boxes, labels, cfg: AugmentConfig, seed, mosaic_on=None):
    """augment.mosaic's share of the batch as mosaics, the rest as they are (box rows padded to
    4M); `mosaic_on` (a scalar bool tensor or variable; None = on) switches mosaic off."""
    tf = _tf()
    s = tf.random.experimental.stateless_split(seed, 2)
    m = boxes.shape[1]

    def plain():
        return (images, tf.pad(boxes, [[0, 0], [0, 3 * m], [0, 0]]),
                tf.pad(labels, [[0, 0], [0, 3 * m]], constant_values=-1))

    def mixed():
        x, b, lab = mosaic_batch(images, boxes, labels, cfg, s[0])
        p_img, p_box, p_lab = plain()
        use = uniform(s[1], tf.shape(images)[0], 0, 1) < cfg.mosaic                 # (B,)
        return (tf.where(use[:, None, None, None], x, p_img), tf.where(use[:, None, None], b, p_box),
                tf.where(use[:, None], lab, p_lab))

    if mosaic_on is None:
        return mixed()
    return tf.cond(tf.convert_to_tensor(mosaic_on), mixed, plain)


class MosaicPhase:
    """The epoch switch of augment.close_mosaic: a tf.Variable the tf.data map reads (`on`), set
    at each epoch's start (a Keras callback: `bind(k, MosaicPhase)(epochs, close)`). Batches
    already prefetched when it flips keep the old setting (at most the prefetch depth)."""

    def __init__(self, on: object, epochs: int, close: int):
        super().__init__()
        self.on, self.last_mosaic_epoch = on, epochs - close - 1

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.on.assign(epoch <= self.last_mosaic_epoch)


def augment_detection_batch(images, boxes, labels, cfg: AugmentConfig, seed, mosaic_on=None):
    """One seeded augmentation of a batch; see the module docstring for shapes (with mosaic the
    box rows are 4M); mosaic_on: see apply_mosaic."""
    tf = _tf()
    seed = tf.cast(seed, tf.int64)
    if cfg.mosaic:
        images, boxes, labels = apply_mosaic(images, boxes, labels, cfg,
                                             tf.random.experimental.stateless_fold_in(seed, 7), mosaic_on)
    s = tf.random.experimental.stateless_split(seed, 5)
    shape = tf.shape(images)
    n, h, w = shape[0], images.shape[1], images.shape[2]
    no = tf.zeros([n], tf.bool)
    hflip = uniform(s[0], n, 0, 1) < 0.5 if cfg.hflip else no
    vflip = uniform(s[1], n, 0, 1) < 0.5 if cfg.vflip else no
    win = windows(cfg, n, s[2])                                              # (B, 4)
    cx0, cx1 = _edges_to_crop(win[:, 0], win[:, 2], w, w)
    cy0, cy1 = _edges_to_crop(win[:, 1], win[:, 3], h, h)
    crop = tf.stack([tf.where(vflip, cy1, cy0), tf.where(hflip, cx1, cx0),
                     tf.where(vflip, cy0, cy1), tf.where(hflip, cx0, cx1)], axis=1)   # (B, 4)
    images = tf.image.crop_and_resize(images, crop, tf.range(n), [h, w], extrapolation_value=FILL)
    boxes, labels = transform_boxes(boxes, labels, win, hflip, vflip)
    if cfg.colour:
        images = apply_colour(images, cfg, s[3])
    if cfg.noise:
        images = apply_noise(images, cfg, s[4])
    return tf.clip_by_value(images, 0.0, 255.0), boxes, labels


def preview_grid(data, cfg: AugmentConfig, rows: int, cols: int, seed: int, out) -> str:
    """PNG: `rows` training scenes (first column) and `cols` augmentations, boxes drawn; returns
    what it shows."""
    import numpy as np
    import tensorflow as tf

    check_detection_augment(cfg)
    plt = pyplot()
    batch = data.train.subset(np.arange(min(max(rows, 16), len(data.train))))   # mosaic partners
    boxes, labels = batch.padded()
    images = tf.constant(batch.images, tf.float32)
    split = data.train.subset(np.arange(min(rows, len(data.train))))
    columns = [(split.images, boxes, labels)]
    for j in range(cols):
        x, b, lab = augment_detection_batch(images, tf.constant(boxes), tf.constant(labels), cfg,
                                            tf.constant([seed, j], tf.int64))
        columns.append((x.numpy(), b.numpy(), lab.numpy()))
    h, w = data.image_size
    fig, axes = plt.subplots(len(split), cols + 1, figsize=(1.5 * (cols + 1), 1.6 * len(split)),
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for r in range(len(split)):
        for c, (x, b, lab) in enumerate(columns):
            ax = axes[r][c]
            img = np.clip(np.round(x[r]), 0, 255).astype(np.uint8)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            for (x0, y0, x1, y1), k in zip(b[r], lab[r]):
                if k >= 0:
                    ax.add_patch(plt.Rectangle((x0 * w - 0.5, y0 * h - 0.5), (x1 - x0) * w, (y1 - y0) * h,
                                               fill=False, lw=0.8, color=colours(int(k) % 10)))
            ax.set_title("original" if c == 0 else f"{int((lab[r] >= 0).sum())} boxes", fontsize=6)
            ax.axis("off")
    fig.suptitle(f"{data.source}: augment preset {cfg.preset!r}, boxes follow (seed {seed})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out)
    return f"{len(split)} scenes x {cols} augmentations, boxes drawn"


__all__ = ["MIN_VISIBLE", "MosaicPhase", "augment_detection_batch", "check_detection_augment", "mosaic_batch",
           "preview_grid"]
