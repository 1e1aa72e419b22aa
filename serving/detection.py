"""Detector post-processing shared by every format, in numpy (no TensorFlow).

An exported detector file (pipeline.export.detection) already holds decoding + NMS and outputs
boxes (1, K, 4) normalized x0, y0, x1, y1, scores (1, K), classes (1, K) int32, count (1,).
A .keras detector outputs the raw (1, A, 4 + C + 1) offsets + logits; `decode_nms` runs the
SAME algorithm as the file's graph on it (softmax, best object class per anchor, centre-offset
decoding with the variances, clip to 0..1, then serving.nms: ONNX Runtime's NonMaxSuppression on
boxes shifted by 2 * class, i.e. per-class, score > threshold, IoU > threshold suppresses, at
most K), so the three formats answer alike. `to_pixels` undoes the plain resize to the model
input (serving.images stretches the whole image to H x W, no letterbox): x * original width,
y * original height.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.nms import nms as run_nms

OUTPUT_NAMES = ("boxes", "scores", "classes", "count")
BOX_FORMAT = "rel_xyxy"   # normalized x0, y0, x1, y1


def metadata_block(contract: Any) -> dict[str, Any]:
    """The artifact metadata's "detection" block: the outputs and the settings baked in."""
    extra = contract.extra
    return {"outputs": {"boxes": "(1, K, 4) float32 normalized x0, y0, x1, y1",
                        "scores": "(1, K) float32", "classes": "(1, K) int32, 0-based into labels",
                        "count": "(1,) int32 valid rows; rows >= count are zero"},
            "box_format": BOX_FORMAT, "nms": dict(extra["nms"]), "nms_op": "NonMaxSuppressionV5",
            "per_class": "class offset (boxes + 2 * class), best class per anchor",
            "encoding": dict(extra["encoding"]), "anchor_spec": dict(extra["anchor_spec"]),
            "num_anchors": int(extra["num_anchors"]),
            "anchors": "regenerate with models.detector.make_anchors(anchor_spec)"}


def anchors(contract: Any) -> np.ndarray:
    """float32 (A, 4) normalized corner anchors of a detector contract (stored, else rebuilt)."""
    from models.detector import anchors_of

    return anchors_of(contract)


def decode_nms(raw: np.ndarray, anchor_boxes: np.ndarray, nms: dict[str, Any],
               variances: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """raw (A, 4 + C + 1) -> boxes (K, 4), scores (K,), classes (K,) int32, count, padded with
    zeros to K = max_detections exactly as the exported files pad."""
    raw = raw.astype(np.float32)
    logits = raw[:, 4:] - raw[:, 4:].max(1, keepdims=True)
    probs = np.exp(logits)
    probs = (probs / probs.sum(1, keepdims=True))[:, 1:]               # (A, C) objects only
    score, cls = probs.max(1), probs.argmax(1).astype(np.int32)          # (A,), (A,)
    a_wh = anchor_boxes[:, 2:] - anchor_boxes[:, :2]
    a_xy = (anchor_boxes[:, :2] + anchor_boxes[:, 2:]) / 2
    xy = raw[:, :2] * variances[0] * a_wh + a_xy
    wh = np.exp(np.minimum(raw[:, 2:4] * variances[1], 10.0)) * a_wh
    boxes = np.clip(np.concatenate([xy - wh / 2, xy + wh / 2], 1), 0.0, 1.0)   # (A, 4)
    k = int(nms["max_detections"])
    keep = run_nms(boxes, score, cls, iou_threshold=float(nms["iou_threshold"]),
                   score_threshold=float(nms["score_threshold"]), max_detections=k)
    out_b, out_s, out_c = np.zeros((k, 4), np.float32), np.zeros(k, np.float32), np.zeros(k, np.int32)
    n = len(keep)
    out_b[:n], out_s[:n], out_c[:n] = boxes[keep], score[keep], cls[keep]
    return out_b, out_s, out_c, n


def to_pixels(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalized x0, y0, x1, y1 (N, 4) -> pixels of the original width x height image."""
    return (boxes * np.asarray([width, height, width, height], np.float32)).astype(np.float32)


@dataclass(frozen=True)
class Detections:
    """One image's detections, boxes in its ORIGINAL pixels (x0, y0, x1, y1)."""
    file: str
    width: int
    height: int
    boxes: np.ndarray                   # float32 (N, 4)
    scores: np.ndarray                  # float32 (N,)
    classes: np.ndarray                 # int32 (N,) into labels
    labels: list[str] = field(default_factory=list)
    latency_ms: float = 0.0             # decode + preprocess + model (+ NMS) + postprocess
    labels_all: tuple[str, ...] = ()    # the model's label names (class id -> name)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "width": self.width, "height": self.height,
                "boxes": self.boxes, "scores": self.scores, "labels": list(self.labels),
                "classes": self.classes, "latency_ms": self.latency_ms}

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "width": self.width, "height": self.height,
                "latency_ms": round(self.latency_ms, 3),
                "detections": [{"label": lab, "class": int(c), "score": round(float(s), 4),
                                "box": [round(float(v), 2) for v in b]}
                               for b, s, c, lab in zip(self.boxes, self.scores, self.classes, self.labels)]}


def save_annotated(source: Any, result: Detections, out_dir: Any) -> tuple[Any, Any]:
    """Write <stem>.png (the original image with its boxes drawn, serving.demo.detection's
    drawing) and <stem>.json (result.to_json()) into out_dir, atomically; returns both paths."""
    import io
    import json
    from pathlib import Path

    from models.atomic import write_bytes
    from serving.demo.detection import draw_detections
    from serving.images import open_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img = open_image(source).convert("RGB")
    drawn = draw_detections(img, {"boxes": result.boxes, "scores": result.scores,
                                  "labels": result.classes}, result.labels_all)
    buf = io.BytesIO()
    drawn.save(buf, format="PNG")
    stem = Path(result.file).stem
    png = write_bytes(out / f"{stem}.png", buf.getvalue())
    js = write_bytes(out / f"{stem}.json", json.dumps(result.to_json(), indent=2).encode())
    return png, js
