"""What the detection task brings to the one trainer (`python -m pipeline train task=detection
model=ssd|yolo ...`): its tf.data pipeline, loss, per-epoch val mAP and final evaluation (called by
pipeline.tasks.detection.task). The YOLO detector's targets are the padded ground truth and its
loss is yolo_loss (task-aligned assignment, BCE, CIoU, DFL); the rest is shared. pipeline.train
runs the fit (optimizers, schedules, strategies, mixed precision, resume, early stopping,
TensorBoard, curves) for every task.

- tf.data: uint8 images + padded boxes -> shuffle -> batch -> box-aware augmentation
  (pipeline.tasks.detection.augment) -> anchor labelling (models.boxes.multibox_target, d2l 14.4.3: every
  ground truth claims its best anchor, then each anchor with IoU >= match_iou), computed on the fly
  per image, vectorised over anchors -> (float32 (B, H, W, C), float32 (B, A, 5) targets).
- loss (SSD, Liu et al. 2016, eq. 1; d2l 14.7.2): classification over C + 1 classes, either
  softmax cross-entropy with hard negative mining (the negatives with the highest loss, 3 per
  positive) or softmax focal loss (Lin et al. 2017, gamma 2) over all anchors; plus smooth L1 on
  the offsets of positive anchors; both divided by the number of positives.
- validation: mAP@[.5:.95] with pycocotools after each epoch (`val_map` in the log; the best
  checkpoint is chosen by it), then mAP, mAP@.5, per-class AP and AR on every split.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models import get_contract
from models.boxes import multibox_target
from models.decoder import DetectionSettings
from pipeline.tasks.detection.augment import augment_detection_batch, check_detection_augment
from pipeline.tasks.detection.config import DetectionConfig
from pipeline.tasks.detection.evaluate import (
    Decoder,
    coco_metrics,
    plot_pr_curves,
    plot_prediction_grid,
    predict_detections,
)
from pipeline.tasks.detection.yolo_loss import make_yolo_loss

EVAL_TRAIN_IMAGES = 500    # the train split's mAP is measured on its first images only


def make_dataset(split: Any, anchors: np.ndarray | None, *, batch_size: int, training: bool, augment: Any,
                 seed: int, match_iou: float, max_objects: int, mosaic_on: Any = None) -> Any:
    """Batches of (float32 (B, H, W, C) pixels 0..255, float32 (B, A, 5) anchor targets), or with
    anchors=None (the YOLO detector, whose assignment needs its predictions: yolo_loss) the
    padded ground truth itself, float32 (B, M, 5): x0, y0, x1, y1, class (padding: zeros, -1)."""
    import tensorflow as tf

    boxes, labels = split.padded(max_objects or None)                 # (N, M, 4), (N, M)
    ds = tf.data.Dataset.from_tensor_slices((split.images, boxes, labels))
    if training:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, b, lab: (tf.cast(x, tf.float32), b, lab),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not None and (augment.geometric or augment.colour or augment.noise
                                             or augment.zoom_out > 1 or augment.mosaic):

        check_detection_augment(augment)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xbl, s: augment_detection_batch(*xbl, augment, s, mosaic_on),
            num_parallel_calls=tf.data.AUTOTUNE)
    if anchors is None:
        return ds.map(lambda x, b, lab: (x, tf.concat([b, tf.cast(lab, tf.float32)[..., None]], -1)),
                      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    a = tf.constant(anchors)

    def label(x, b, lab):
        valid = lab >= 0                                                # padding: x1 <= x0 (zeros)
        b = tf.where(valid[..., None], b, 0.0)
        targets = tf.map_fn(lambda bl: multibox_target(a, bl[0], tf.maximum(bl[1], 0), match_iou),
                            (b, lab), fn_output_signature=tf.TensorSpec([len(anchors), 5], tf.float32))
        return x, targets                                               # (B, A, 5)

    return ds.map(label, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def make_loss(cfg: DetectionConfig, num_classes: int, settings: DetectionSettings | None = None) -> Any:
    """The detector's loss by its box encoding: SSD's (center_offsets, below: loss(y_true (B, A, 5),
    y_pred (B, A, 4 + C + 1)), see the module docstring) or YOLO's (ltrb_dfl: yolo_loss)."""
    import tensorflow as tf

    if settings is not None and settings.encoding == "ltrb_dfl":
        return make_yolo_loss(cfg, settings, num_classes)

    def ssd_loss(y_true, y_pred):
        y_pred = tf.cast(y_pred, tf.float32)
        cls = tf.cast(y_true[..., 4], tf.int32)                          # (B, A) 0 = background
        pos = cls > 0
        num_pos = tf.reduce_sum(tf.cast(pos, tf.float32), axis=1)        # (B,)
        logits = y_pred[..., 4:]                                         # (B, A, C + 1)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=cls, logits=logits)   # (B, A)
        if cfg.loss == "focal":
            p_t = tf.exp(-ce)
            alpha = tf.where(pos, cfg.focal_alpha, 1 - cfg.focal_alpha)
            cls_loss = tf.reduce_sum(alpha * (1 - p_t) ** cfg.focal_gamma * ce, axis=1)
        else:   # hard negative mining: rank the negatives by loss, keep the top k per image
            neg_loss = tf.where(pos, -1.0, ce)
            rank = tf.argsort(tf.argsort(neg_loss, axis=1, direction="DESCENDING"), axis=1)
            k = tf.maximum(cfg.neg_ratio * num_pos, float(cfg.min_negatives))          # (B,)
            hard = (~pos) & (tf.cast(rank, tf.float32) < k[:, None])
            cls_loss = tf.reduce_sum(tf.where(pos | hard, ce, 0.0), axis=1)
        diff = tf.abs(y_pred[..., :4] - y_true[..., :4])
        smooth_l1 = tf.reduce_sum(tf.where(diff < 1.0, 0.5 * diff ** 2, diff - 0.5), axis=-1)  # (B, A)
        box_loss = tf.reduce_sum(tf.where(pos, smooth_l1, 0.0), axis=1)
        # per image, scaled so that Keras' mean over the batch is sum / (positives in the batch)
        batch = tf.cast(tf.shape(y_true)[0], tf.float32)
        return (cls_loss + cfg.box_weight * box_loss) * batch / tf.maximum(tf.reduce_sum(num_pos), 1.0)

    return ssd_loss


def evaluate_split(model: Any, split: Any, class_names: tuple[str, ...], image_size: tuple[int, int],
                   limit: int | None = None, decoder: Decoder | None = None) -> tuple[dict[str, Any], list]:
    part = split.subset(np.arange(min(limit, len(split)))) if limit else split
    dets = predict_detections(model, part.images, decoder=decoder)
    return coco_metrics(part.boxes, part.labels, dets, class_names, image_size), dets


class ValMAP:
    """Adds val_map / val_map50 to the epoch logs (before the log row and the checkpoint read
    them): pycocotools on the val split with the weights of the epoch just trained."""

    def __init__(self, split: Any, class_names: tuple[str, ...], image_size: tuple[int, int]):
        super().__init__()
        self.split, self.class_names, self.image_size = split, class_names, image_size
        self.decoder: Decoder | None = None   # traced at the first epoch, then reused

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            self.decoder = self.decoder or Decoder(get_contract(self.model).detection)
            m, _ = evaluate_split(self.model, self.split, self.class_names, self.image_size,
                                  decoder=self.decoder)
            logs["val_map"], logs["val_map50"] = m["map"], m["map50"]


def evaluate_all(model: Any, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """metrics.json entries for every split, and what the plots need (test split, else val)."""
    out: dict[str, Any] = {}
    shown: dict[str, Any] = {}
    decoder = Decoder(get_contract(model).detection)
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if len(split) == 0:
            out[f"{name}_map"] = out[f"{name}_map50"] = None
            continue
        m, dets = evaluate_split(model, split, data.class_names, data.image_size,
                                 EVAL_TRAIN_IMAGES if name == "train" else None, decoder)
        for key in ("map", "map50", "map75", "ar100"):
            out[f"{name}_{key}"] = m[key]
        if name in ("val", "test"):
            shown = {"split": name, "metrics": m, "dets": dets, "data": split}
            out["per_class_ap"], out["per_class_ap50"] = m["per_class_ap"], m["per_class_ap50"]
            out["per_class_split"] = name
    if out.get("val_map") is not None:
        out["generalization_gap"] = out["train_map"] - out["val_map"]
    return out, shown


def write_plots(paths: Any, shown: dict[str, Any], class_names: tuple[str, ...], title: str,
                score_threshold: float) -> None:
    if not shown:
        return
    m, split = shown["metrics"], shown["data"]
    plot_pr_curves(m["pr"], paths.pr_curves, title=f"{title}: {shown['split']} set, mAP@.5 {m['map50']:.3f}, "
                   f"mAP@[.5:.95] {m['map']:.3f}")
    plot_prediction_grid(split.images, split.boxes, split.labels, shown["dets"], class_names, paths.val_grid,
                         score_threshold=score_threshold,
                         title=f"{title}: {shown['split']} predictions (score >= {score_threshold}), "
                               "true boxes dashed")
