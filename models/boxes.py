"""Box maths for detection: IoU, corner/centre formats, anchors, anchor labelling, offsets, NMS.

Follows d2l 14.3 ("Object Detection and Bounding Boxes") and 14.4 ("Anchor Boxes"), and the SSD
paper (Liu et al. 2016, "SSD: Single Shot MultiBox Detector"):
- boxes are corners (x0, y0, x1, y1) normalised by the image width/height (0..1), as in d2l;
  `keras.utils.bounding_boxes` calls this format "rel_xyxy";
- `multibox_prior` (d2l 14.4.1): sizes s1..sn and ratios r1..rm give n + m - 1 anchors per pixel,
  (s_i, r_1) for every size and (s_1, r_j) for j > 1, centred on the pixel, grouped per pixel;
- `assign_anchors` (d2l 14.4.3): each ground-truth box claims the anchor it overlaps most, then
  every other anchor whose best IoU passes a threshold takes that box; vectorised over anchors
  (one (A, G) IoU matrix, an argmax each way and one scatter: no Python loop over anchors);
- `encode_offsets` / `decode_offsets` (d2l 14.4.3, SSD eq. 2): centre offsets divided by the
  anchor size and log size ratios, scaled by the variances (0.1, 0.2);
- `iou_numpy`: pairwise_iou's numpy twin for code without TensorFlow.
Prediction (decode + NMS, d2l 14.4.4) is models.decoder: the one decoder of evaluation, the
exported files, serving and the demo.

Anchors are made once per model with numpy (they depend only on the feature-map sizes); the
per-image functions are TensorFlow ops so they run inside tf.data and inside the loss.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VARIANCES = (0.1, 0.2)   # centre, size: d2l's 10 and 5, the SSD reference implementation's values
EPS = 1e-8


def _tf():
    import tensorflow as tf
    return tf


# ------------------------------------------------------------------ formats and IoU


def corners_to_center(boxes):
    """(..., 4) x0, y0, x1, y1 -> (..., 4) cx, cy, w, h (d2l box_corner_to_center)."""
    tf = _tf()
    x0, y0, x1, y1 = tf.unstack(tf.convert_to_tensor(boxes, tf.float32), axis=-1)
    return tf.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def center_to_corners(boxes):
    """(..., 4) cx, cy, w, h -> (..., 4) x0, y0, x1, y1 (d2l box_center_to_corner)."""
    tf = _tf()
    cx, cy, w, h = tf.unstack(tf.convert_to_tensor(boxes, tf.float32), axis=-1)
    return tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def box_area(boxes):
    """(..., 4) corners -> (...) area, 0 for empty boxes."""
    tf = _tf()
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def pairwise_iou(a, b):
    """IoU of every box in a (N, 4) with every box in b (M, 4), corners -> (N, M) (d2l box_iou)."""
    tf = _tf()
    a, b = tf.convert_to_tensor(a, tf.float32), tf.convert_to_tensor(b, tf.float32)
    lo = tf.maximum(a[:, None, :2], b[None, :, :2])                 # (N, M, 2)
    hi = tf.minimum(a[:, None, 2:], b[None, :, 2:])                 # (N, M, 2)
    inter = tf.reduce_prod(tf.maximum(hi - lo, 0.0), axis=-1)       # (N, M)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / tf.maximum(union, EPS)


# ------------------------------------------------------------------ anchors


def anchors_per_pixel(sizes: Sequence[float], ratios: Sequence[float]) -> int:
    return len(sizes) + len(ratios) - 1


def multibox_prior(height: int, width: int, sizes: Sequence[float], ratios: Sequence[float],
                   aspect: float = 1.0) -> np.ndarray:
    """float32 (height * width * (n + m - 1), 4) anchors in normalised corners, grouped per pixel.

    d2l 14.4.1: an anchor of size s and ratio r has width s * sqrt(r) and height s / sqrt(r)
    (relative to the image; width times `aspect` = image H / W, so a ratio-1 anchor is square in
    pixels on non-square images); pixel (i, j) has centre ((j + 0.5) / width, (i + 0.5) / height).
    """
    sizes, ratios = np.asarray(sizes, np.float64), np.asarray(ratios, np.float64)
    s = np.concatenate([sizes, np.full(len(ratios) - 1, sizes[0])])          # (k,)
    r = np.concatenate([np.full(len(sizes), ratios[0]), ratios[1:]])          # (k,)
    w, h = s * np.sqrt(r) * aspect, s / np.sqrt(r)                             # (k,)
    cy, cx = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width,
                         indexing="ij")                                        # (H, W)
    centres = np.stack([cx, cy, cx, cy], axis=-1).reshape(-1, 1, 4)            # (H*W, 1, 4)
    half = np.stack([-w, -h, w, h], axis=-1)[None] / 2                         # (1, k, 4)
    return (centres + half).reshape(-1, 4).astype(np.float32)


def ssd_sizes(num_scales: int, smin: float = 0.1, smax: float = 0.9) -> list[tuple[float, float]]:
    """(s, sqrt(s * s_next)) per scale, s linear from smin to smax (SSD eq. 4, d2l 14.7's
    `sizes`): two sizes per scale, the second between this scale and the next."""
    if num_scales == 1:
        return [(smin, float(np.sqrt(smin * smax)))]
    s = np.linspace(smin, smax, num_scales + 1)
    return [(float(s[i]), float(np.sqrt(s[i] * s[i + 1]))) for i in range(num_scales)]


# ------------------------------------------------------------------ labelling and offsets


def encode_offsets(anchors, boxes, variances: Sequence[float] = VARIANCES):
    """Offsets of matched boxes (A, 4) from anchors (A, 4), corners -> (A, 4) (d2l offset_boxes):
    ((cx - cx_a) / w_a / v0, (cy - cy_a) / h_a / v0, log(w / w_a) / v1, log(h / h_a) / v1)."""
    tf = _tf()
    a, b = corners_to_center(anchors), corners_to_center(boxes)
    xy = (b[..., :2] - a[..., :2]) / a[..., 2:] / variances[0]
    wh = tf.math.log(tf.maximum(b[..., 2:], EPS) / a[..., 2:]) / variances[1]
    return tf.concat([xy, wh], axis=-1)


def decode_offsets(anchors, offsets, variances: Sequence[float] = VARIANCES):
    """Inverse of encode_offsets: anchors (A, 4) + offsets (..., A, 4) -> boxes (..., A, 4) corners
    (d2l offset_inverse)."""
    tf = _tf()
    a = corners_to_center(anchors)
    offsets = tf.convert_to_tensor(offsets, tf.float32)
    xy = offsets[..., :2] * variances[0] * a[..., 2:] + a[..., :2]
    wh = tf.exp(tf.minimum(offsets[..., 2:] * variances[1], 10.0)) * a[..., 2:]   # no inf on wild outputs
    return center_to_corners(tf.concat([xy, wh], axis=-1))


def _padded(gt_boxes):
    """One padding row appended, so an image without objects needs no special case."""
    tf = _tf()
    return tf.concat([tf.reshape(gt_boxes, [-1, 4]), tf.zeros([1, 4], tf.float32)], axis=0)


def assign_anchors(anchors, gt_boxes, iou_threshold: float = 0.5):
    """int32 (A,) index of the ground-truth box each anchor is labelled with, -1 = background.

    anchors (A, 4), gt_boxes (G, 4) corners; rows with x1 <= x0 are padding and match nothing.
    d2l 14.4.3: every ground truth claims its best anchor (even below the threshold), then each
    remaining anchor takes its best box if their IoU >= iou_threshold. Where two boxes claim the
    same anchor, the one that overlaps it more keeps it.
    """
    tf = _tf()
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = _padded(tf.convert_to_tensor(gt_boxes, tf.float32))               # (G + 1, 4)
    valid = gt_boxes[:, 2] > gt_boxes[:, 0]                                       # (G + 1,)
    iou = tf.where(valid[None, :], pairwise_iou(anchors, gt_boxes), -1.0)         # (A, G + 1)
    best_gt = tf.argmax(iou, axis=1, output_type=tf.int32)                        # (A,)
    best_iou = tf.reduce_max(iou, axis=1)
    assigned = tf.where(best_iou >= iou_threshold, best_gt, -1)                   # (A,)
    # each (valid) ground truth claims its best anchor; ties on one anchor go to the higher IoU
    best_anchor = tf.argmax(iou, axis=0, output_type=tf.int32)                    # (G,)
    g = tf.boolean_mask(tf.range(tf.shape(gt_boxes)[0], dtype=tf.int32), valid)   # (G',)
    claimed_at = tf.boolean_mask(best_anchor, valid)                              # (G',)
    claim_iou = tf.gather_nd(iou, tf.stack([claimed_at, g], axis=1))              # (G',)
    order = tf.argsort(claim_iou)            # scatter the strongest claim last: it wins
    return tf.tensor_scatter_nd_update(assigned, tf.gather(claimed_at, order)[:, None],
                                       tf.gather(g, order))


def multibox_target(anchors, gt_boxes, gt_labels, iou_threshold: float = 0.5,
                    variances: Sequence[float] = VARIANCES):
    """float32 (A, 5) training target of one image: 4 offsets, then the class (0 = background,
    label + 1 for an object); offsets of background anchors are 0 (d2l multibox_target).

    gt_boxes (G, 4) normalised corners (padding rows: x1 <= x0), gt_labels (G,) int class ids.
    """
    tf = _tf()
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    idx = assign_anchors(anchors, gt_boxes, iou_threshold)                        # (A,)
    pos = idx >= 0
    safe = tf.maximum(idx, 0)
    matched = tf.gather(_padded(gt_boxes), safe)                                  # (A, 4)
    offsets = tf.where(pos[:, None], encode_offsets(anchors, tf.where(pos[:, None], matched, anchors),
                                                    variances), 0.0)              # (A, 4)
    labels = tf.concat([tf.reshape(tf.cast(gt_labels, tf.int32), [-1]), [0]], axis=0)
    cls = tf.where(pos, tf.gather(labels, safe) + 1, 0)                           # (A,)
    return tf.concat([offsets, tf.cast(cls, tf.float32)[:, None]], axis=-1)


# ------------------------------------------------------------------ numpy (serving, no TensorFlow)


def iou_numpy(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box (4,) with each of boxes (M, 4) -> (M,); 0 where both are empty.
    The numpy twin of pairwise_iou for code that runs without TensorFlow (serving, the demo)."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    lo = np.maximum(box[:2], boxes[:, :2])                          # (M, 2)
    hi = np.minimum(box[2:], boxes[:, 2:])                          # (M, 2)
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)              # (M,)
    area = np.prod(np.clip(box[2:] - box[:2], 0, None))
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
