"""The YOLO detector's loss (models.yolo; YOLOv8's recipe, Jocher et al. 2023): task-aligned
assignment per batch (models.boxes.task_aligned_assign: it needs the predictions, so it runs in
the loss, not in tf.data), then
  BCE of every cell's sigmoid class scores against the soft IoU-aware targets (all cells, all
    classes; positives aim at their normalised alignment, everything else at 0),
  (1 - CIoU) of the positives' decoded boxes (models.boxes.ciou),
  DFL (Li et al. 2020, "Generalized Focal Loss"): each side's distribution puts its mass on the
    two bins around the true distance, weighted by closeness,
each positive weighted by its soft target, all divided by the sum of the soft targets.

y_true: (B, M, 5) the padded ground truth (x0, y0, x1, y1 normalised, class; padding class -1);
y_pred: (B, A, 4 * reg_max + C), the detector's raw output (models.decoder's ltrb_dfl layout).
"""
from __future__ import annotations

from typing import Any

from models.boxes import ciou, task_aligned_assign
from models.decoder import DetectionSettings, dfl_distances
from pipeline.tasks.detection.config import DetectionConfig


def make_yolo_loss(cfg: DetectionConfig, settings: DetectionSettings, num_classes: int) -> Any:
    """loss(y_true (B, M, 5), y_pred (B, A, 4R + C)) -> (B,) per image, so that Keras' batch
    mean is the batch's loss sum / the sum of its soft targets."""
    import tensorflow as tf

    anchors = settings.anchors()
    points = tf.constant((anchors[:, :2] + anchors[:, 2:]) / 2)          # (A, 2) cell centres
    sides = tf.constant(anchors[:, 2:] - anchors[:, :2])                 # (A, 2) cell sizes (strides)
    r = settings.reg_max

    def yolo_loss(y_true, y_pred):
        y_pred, y_true = tf.cast(y_pred, tf.float32), tf.cast(y_true, tf.float32)
        gt_boxes, gt_labels = y_true[..., :4], tf.cast(tf.round(y_true[..., 4]), tf.int32)
        dist, logits = y_pred[..., :4 * r], y_pred[..., 4 * r:]          # (B, A, 4R), (B, A, C)
        ltrb = dfl_distances(dist, r)                                    # (B, A, 4) in strides
        boxes = tf.concat([points - ltrb[..., :2] * sides, points + ltrb[..., 2:] * sides], -1)
        t_boxes, t_scores, fg = task_aligned_assign(
            tf.sigmoid(logits), boxes, points, sides, gt_boxes, gt_labels, topk=cfg.tal_topk,
            alpha=cfg.tal_alpha, beta=cfg.tal_beta, radius=cfg.tal_radius)
        norm = tf.maximum(tf.reduce_sum(t_scores), 1.0)
        cls = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=t_scores, logits=logits),
                            axis=[1, 2])                                 # (B,)
        weight = tf.where(fg, tf.reduce_sum(t_scores, -1), 0.0)          # (B, A)
        box = tf.reduce_sum((1.0 - ciou(boxes, t_boxes)) * weight, axis=1)
        # DFL: the true distances in strides, just below the last bin
        target = tf.concat([points - t_boxes[..., :2], t_boxes[..., 2:] - points], -1)
        target = tf.clip_by_value(target / tf.tile(sides, [1, 2]), 0.0, r - 1.01)   # (B, A, 4)
        left = tf.floor(target)
        w_left = left + 1.0 - target
        logit4 = tf.reshape(dist, tf.concat([tf.shape(dist)[:2], [4, r]], 0))   # (B, A, 4, R)
        ce = lambda i: tf.nn.sparse_softmax_cross_entropy_with_logits(  # noqa: E731
            labels=tf.cast(i, tf.int32), logits=logit4)                  # (B, A, 4)
        dfl = tf.reduce_mean(ce(left) * w_left + ce(left + 1.0) * (1.0 - w_left), axis=-1)
        dfl = tf.reduce_sum(dfl * weight, axis=1)
        batch = tf.cast(tf.shape(y_pred)[0], tf.float32)
        return (cfg.cls_weight * cls + cfg.iou_weight * box + cfg.dfl_weight * dfl) * batch / norm

    return yolo_loss
