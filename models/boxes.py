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
- `ciou` (Zheng et al. 2020) and `task_aligned_assign` (Feng et al. 2021, TOOD; YOLOv8's
  assigner): the YOLO detector's box loss and its anchor-point labelling (models.yolo);
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


def box_iou(a, b):
    """IoU of boxes a (..., 4) and b (..., 4), corners, broadcasting -> (...)."""
    tf = _tf()
    a, b = tf.convert_to_tensor(a, tf.float32), tf.convert_to_tensor(b, tf.float32)
    lo = tf.maximum(a[..., :2], b[..., :2])                         # (..., 2)
    hi = tf.minimum(a[..., 2:], b[..., 2:])                         # (..., 2)
    inter = tf.reduce_prod(tf.maximum(hi - lo, 0.0), axis=-1)       # (...)
    union = box_area(a) + box_area(b) - inter
    return inter / tf.maximum(union, EPS)


def pairwise_iou(a, b):
    """IoU of every box in a (N, 4) with every box in b (M, 4), corners -> (N, M) (d2l box_iou)."""
    tf = _tf()
    a, b = tf.convert_to_tensor(a, tf.float32), tf.convert_to_tensor(b, tf.float32)
    return box_iou(a[:, None, :], b[None, :, :])


def ciou(a, b):
    """Complete IoU (Zheng et al. 2020, "Distance-IoU Loss") of boxes a, b (..., 4) corners,
    broadcasting -> (...): IoU - rho^2 / c^2 - alpha * v, rho the distance between the centres, c
    the diagonal of the smallest box enclosing both, v = 4 / pi^2 (atan(w_b / h_b) -
    atan(w_a / h_a))^2 the aspect-ratio term, alpha = v / (1 - IoU + v) (no gradient, as the
    paper). 1 for equal boxes, down to -1 for distant ones; 1 - ciou is the box loss."""
    import math

    tf = _tf()
    a, b = tf.convert_to_tensor(a, tf.float32), tf.convert_to_tensor(b, tf.float32)
    iou = box_iou(a, b)
    enclose = tf.maximum(a[..., 2:], b[..., 2:]) - tf.minimum(a[..., :2], b[..., :2])     # (..., 2)
    c2 = tf.reduce_sum(enclose ** 2, axis=-1) + EPS
    rho2 = tf.reduce_sum(((a[..., :2] + a[..., 2:]) - (b[..., :2] + b[..., 2:])) ** 2, axis=-1) / 4
    wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
    wb, hb = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    v = 4 / math.pi ** 2 * (tf.atan(wb / (hb + EPS)) - tf.atan(wa / (ha + EPS))) ** 2
    alpha = tf.stop_gradient(v / (v - iou + 1 + EPS))
    return iou - rho2 / c2 - alpha * v


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


def task_aligned_assign(scores, pred_boxes, points, sides, gt_boxes, gt_labels, *, topk: int = 10,
                        alpha: float = 0.5, beta: float = 6.0, radius: float = 2.5):
    """Task-aligned assignment (Feng et al. 2021, "TOOD", as YOLOv8 uses it) of a batch's
    anchor points to its ground truths -> target boxes (B, A, 4), soft target scores (B, A, C),
    foreground mask (B, A) bool. All (B, M, A) tensors, no loop over boxes or points.

    scores (B, A, C) predicted class probabilities and pred_boxes (B, A, 4) predicted corners
    (no gradient flows through the assignment); points (A, 2) the cell centres and sides (A, 2)
    the cells' anchor-box sides (the strides), normalised; gt_boxes (B, M, 4) corners, gt_labels
    (B, M) int, padding rows labelled -1. Per ground truth:
      candidates: the points inside the box, the box widened about its centre to at least
        `radius` cells per axis at each point's scale (so a box smaller than a cell still has
        points; YOLOX's centre radius);
      alignment t = s^alpha * IoU^beta (s the predicted score of the box's class, IoU of the
        predicted box), and the `topk` candidates with the highest t are its positives;
      a point claimed by several boxes goes to the one its predicted box overlaps most;
      soft target of a positive: t / max t of its box * max IoU of its box (an IoU-aware score,
        the best point of a well-predicted box aims at its IoU, not 1).
    """
    tf = _tf()
    scores, pred_boxes = tf.stop_gradient(scores), tf.stop_gradient(pred_boxes)
    num_classes, num_points = tf.shape(scores)[-1], tf.shape(scores)[1]
    valid = gt_labels >= 0                                                        # (B, M)
    labels = tf.maximum(tf.cast(gt_labels, tf.int32), 0)
    centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2                          # (B, M, 2)
    half = tf.maximum((gt_boxes[..., None, 2:] - gt_boxes[..., None, :2]) / 2,
                      radius * sides[None, None] / 2)                             # (B, M, A, 2)
    inside = tf.reduce_all(tf.abs(points[None, None] - centre[:, :, None]) < half, axis=-1)
    cand = inside & valid[..., None]                                              # (B, M, A)
    iou = tf.where(cand, box_iou(gt_boxes[:, :, None], pred_boxes[:, None]), 0.0)  # (B, M, A)
    s = tf.gather(tf.transpose(scores, [0, 2, 1]), labels, batch_dims=1)           # (B, M, A)
    align = tf.where(cand, s ** alpha * iou ** beta, 0.0)
    k = tf.minimum(topk, num_points)
    _, idx = tf.math.top_k(align + tf.cast(cand, tf.float32) * 1e-9, k=k)        # (B, M, k)
    top = tf.reduce_max(tf.one_hot(idx, num_points), axis=-2) > 0                 # (B, M, A)
    pos = top & cand
    # a point claimed by several boxes: the box its prediction overlaps most keeps it
    many = tf.reduce_sum(tf.cast(pos, tf.int32), axis=1, keepdims=True) > 1       # (B, 1, A)
    best = tf.one_hot(tf.argmax(iou, axis=1), tf.shape(iou)[1], axis=1) > 0       # (B, M, A)
    pos = tf.where(many, best & cand, pos)
    fg = tf.reduce_any(pos, axis=1)                                               # (B, A)
    gt_idx = tf.argmax(tf.cast(pos, tf.float32), axis=1, output_type=tf.int32)    # (B, A)
    target_boxes = tf.gather(gt_boxes, gt_idx, batch_dims=1)                      # (B, A, 4)
    target_labels = tf.gather(labels, gt_idx, batch_dims=1)                       # (B, A)
    posf = tf.cast(pos, tf.float32)
    align, iou = align * posf, iou * posf
    norm = align * tf.reduce_max(iou, axis=-1, keepdims=True) / (
        tf.reduce_max(align, axis=-1, keepdims=True) + EPS)                       # (B, M, A)
    soft = tf.reduce_max(norm, axis=1) * tf.cast(fg, tf.float32)                  # (B, A)
    return target_boxes, tf.one_hot(target_labels, num_classes) * soft[..., None], fg


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
