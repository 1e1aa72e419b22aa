"""Detector evaluation: predict with NMS, COCO metrics with pycocotools, PR curves, a val grid.

COCO's protocol (Lin et al. 2014; pycocotools' COCOeval): AP averaged over IoU 0.50:0.05:0.95
("mAP@[.5:.95]") and at IoU 0.5 ("mAP@.5"), per class and averaged over classes; AR with up to
100 detections per image. Predictions come from models.decoder.detect_graph - the decoding +
NMS graph the exported files hold, at the contract's own settings - so the mAP a run reports
is the mAP its files ship (the export gate measures the same number on the same test split).
Boxes are scored in pixels of the model input (normalised corners x its size).

    dets = predict_detections(model, split.images)          # per image (boxes, scores, classes)
    metrics = coco_metrics(split, dets, class_names, image_size=(128, 128))
"""
from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from models import get_contract
from models.decoder import detect_graph_batch
from pipeline.plots import pyplot, save_figure


class Decoder:
    """models.decoder.detect_graph over a batch of raw outputs, traced once for a detector's
    settings (the val mAP calls it every epoch)."""

    def __init__(self, settings: Any) -> None:
        import tensorflow as tf

        self._tf = tf
        self._decode = tf.function(lambda raw: detect_graph_batch(raw, settings))

    def __call__(self, raw: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = self._decode(self._tf.constant(raw, self._tf.float32))   # (B, K, 4), (B, K), (B, K), (B,)
        boxes, scores, classes, count = (t.numpy() for t in out)
        return [(b[:n], s[:n], c[:n]) for b, s, c, n in zip(boxes, scores, classes, count)]


def predict_detections(model: Any, images: np.ndarray, *, batch_size: int = 64, decoder: Decoder | None = None
                       ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: boxes float32 (n, 4) normalised corners, scores (n,), classes int32 (n,): the
    Keras model's raw outputs through the one decoder (models.decoder), as the files decode."""
    decoder = decoder or Decoder(get_contract(model).detection)
    out = []
    for start in range(0, len(images), batch_size):
        out += decoder(model.predict_on_batch(images[start:start + batch_size].astype(np.float32)))
    return out


def _coco_objects(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                  dets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], num_classes: int,
                  image_size: tuple[int, int]) -> tuple[Any, Any]:
    from pycocotools.coco import COCO

    h, w = image_size
    scale = np.array([w, h, w, h], np.float64)
    images = [{"id": i + 1, "width": w, "height": h} for i in range(len(boxes))]
    anns, results = [], []
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        for box, c in zip(np.asarray(b, np.float64) * scale, lab):
            x0, y0, x1, y1 = box
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    for i, (b, s, c) in enumerate(dets):
        for box, score, cls in zip(np.asarray(b, np.float64) * scale, s, c):
            x0, y0, x1, y1 = box
            results.append({"image_id": i + 1, "category_id": int(cls) + 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results) if results else None
    return gt, dt


def coco_metrics(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 dets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], class_names: Sequence[str],
                 image_size: tuple[int, int]) -> dict[str, Any]:
    """map (AP@[.5:.95]), map50, map75, ar100, per-class AP / AP@.5 and the PR curves at IoU 0.5
    ('pr': {class: precision at recall 0, 0.01, .., 1}) of predictions vs ground truth."""
    from pycocotools.cocoeval import COCOeval

    k = len(class_names)
    gt, dt = _coco_objects(boxes, labels, dets, k, image_size)
    empty = {"map": 0.0, "map50": 0.0, "map75": 0.0, "ar100": 0.0,
             "per_class_ap": {n: 0.0 for n in class_names}, "per_class_ap50": {n: 0.0 for n in class_names},
             "pr": {}, "num_images": len(boxes), "num_boxes": int(sum(len(b) for b in boxes)),
             "num_detections": int(sum(len(d[0]) for d in dets))}
    if dt is None or not gt.getAnnIds():
        return empty
    ev = COCOeval(gt, dt, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]          # (T=10 IoUs, R=101 recalls, K, A=4 areas, M=3 maxDets)
    recall = ev.eval["recall"]                # (T, K, A, M)

    def ap(p: np.ndarray) -> float:
        p = p[p > -1]                          # -1: no ground truth of that class
        return float(p.mean()) if p.size else float("nan")

    per_class = {n: ap(precision[:, :, i, 0, -1]) for i, n in enumerate(class_names)}
    per_class50 = {n: ap(precision[0, :, i, 0, -1]) for i, n in enumerate(class_names)}
    r = recall[:, :, 0, -1]
    return {**empty, "map": float(ev.stats[0]), "map50": float(ev.stats[1]), "map75": float(ev.stats[2]),
            "ar100": float(r[r > -1].mean()) if (r > -1).any() else 0.0,
            "per_class_ap": per_class, "per_class_ap50": per_class50,
            "pr": {n: precision[0, :, i, 0, -1].tolist() for i, n in enumerate(class_names)}}


def plot_pr_curves(pr: dict[str, list[float]], dest: str | os.PathLike, *, title: str = "") -> None:
    """Precision against recall at IoU 0.5, one line per class, AP@.5 in the legend."""

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    recall = np.linspace(0, 1, 101)
    for name, p in pr.items():
        p = np.asarray(p, float)
        valid = p > -1
        ax.plot(recall[valid], p[valid], label=f"{name} (AP@.5 {p[valid].mean() if valid.any() else 0:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if pr:
        ax.legend(fontsize=7, loc="lower left")
    else:   # no class with ground truth: say so instead of an empty legend (and matplotlib's warning)
        ax.text(0.5, 0.5, "no ground-truth boxes", ha="center", va="center", color="0.4")
    ax.set_title(title or "precision-recall at IoU 0.5", fontsize=9)
    fig.tight_layout()
    save_figure(fig, dest)


def plot_prediction_grid(images: np.ndarray, boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                         dets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                         class_names: Sequence[str],
                         dest: str | os.PathLike, *, score_threshold: float = 0.3, n: int = 16,
                         title: str = "") -> None:
    """Up to n images: true boxes dashed white, predictions (score >= threshold) in class colours."""

    plt = pyplot()
    n = min(n, len(images))
    cols = min(4, n) or 1
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.7 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    h, w = images.shape[1:3]
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        for (x0, y0, x1, y1) in boxes[i]:
            ax.add_patch(plt.Rectangle((x0 * w - 0.5, y0 * h - 0.5), (x1 - x0) * w, (y1 - y0) * h,
                                       fill=False, lw=1.0, ls="--", color="white"))
        b, s, c = dets[i]
        for (x0, y0, x1, y1), score, cls in zip(b, s, c):
            if score < score_threshold:
                continue
            colour = colours(int(cls) % 10)
            ax.add_patch(plt.Rectangle((x0 * w - 0.5, y0 * h - 0.5), (x1 - x0) * w, (y1 - y0) * h,
                                       fill=False, lw=1.2, color=colour))
            ax.text(x0 * w, y0 * h - 1, f"{class_names[int(cls)]} {score:.2f}", color="white", fontsize=5,
                    bbox={"facecolor": colour, "pad": 0.5, "lw": 0})
    fig.suptitle(title or f"predictions (score >= {score_threshold}) and true boxes (dashed)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, dest)
