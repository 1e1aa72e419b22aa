"""Detection results for the demo: score filter + stricter NMS on a file's outputs, drawing.

A detection result is a mapping
    boxes  (N, 4) x0, y0, x1, y1 in pixels of the image it is drawn on (x1/y1 exclusive)
    scores (N,)   confidence in 0..1
    labels (N,)   class ids (indices into the contract's labels) or label strings
The exported detector already ran NMS (d2l 14.4.4; its thresholds are in its metadata);
`filter_detections` keeps the boxes scoring above the page's score slider and runs
serving.nms (ONNX Runtime's NonMaxSuppression, class-aware) again at the page's IoU slider,
which can only remove more boxes than the file did. numpy + Pillow + onnxruntime, so it runs
wherever the serving runtime runs. Drawing is serving.tasks.detect's, `found` serving.samples'.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from serving.demo.settings import DemoError
from serving.nms import nms
from serving.tasks.detect import label_text


def as_detections(result: Mapping[str, Any], label_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Validate and normalise: boxes float32 (N, 4), scores float32 (N,), class ids int (N,).
    String labels are mapped to ids through label_names. DemoError on any inconsistency."""
    try:
        boxes = np.asarray(result["boxes"], np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"got shape {boxes.shape}")
        scores = np.asarray(result["scores"], np.float32).reshape(-1)
        raw_labels = list(np.asarray(result["labels"]).reshape(-1))
    except KeyError as e:
        raise DemoError(f"detection result lacks {e.args[0]!r} (needs boxes, scores, labels)") from None
    except (TypeError, ValueError) as e:
        raise DemoError(f"detection result: boxes must be (N, 4) numbers ({e})") from None
    if not (len(boxes) == len(scores) == len(raw_labels)):
        raise DemoError(f"detection result: {len(boxes)} boxes, {len(scores)} scores and "
                        f"{len(raw_labels)} labels; they must match")
    if not np.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
        raise DemoError("detection result: boxes must be finite x0, y0, x1, y1 with x1 >= x0, y1 >= y0")
    ids = np.empty(len(raw_labels), np.int64)
    for i, lab in enumerate(raw_labels):
        if isinstance(lab, (str, np.str_)):
            if lab not in label_names:
                raise DemoError(f"detection result: label {str(lab)!r} is not one of the model's labels")
            ids[i] = list(label_names).index(lab)
        else:
            ids[i] = int(lab)
            if ids[i] < 0 or (label_names and ids[i] >= len(label_names)):
                raise DemoError(f"detection result: class id {ids[i]} outside 0..{len(label_names) - 1}")
    return {"boxes": boxes, "scores": scores, "labels": ids}


def filter_detections(result: Mapping[str, Any], *, score_threshold: float, iou_threshold: float,
                      label_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Keep boxes scoring > score_threshold, then class-aware NMS at iou_threshold (serving.nms,
    the exported files' semantics); returns the kept boxes/scores/labels (class ids), best first."""
    det = as_detections(result, label_names)
    kept = nms(det["boxes"], det["scores"], det["labels"], iou_threshold=iou_threshold,
               score_threshold=score_threshold)
    return {k: v[kept] for k, v in det.items()}


def enlarged(image: Image.Image, det: Mapping[str, np.ndarray], min_side: int = 384
             ) -> tuple[Image.Image, dict[str, np.ndarray]]:
    """For showing a small image: it and its boxes scaled by the whole factor that brings its
    short side to >= min_side (nearest neighbour: pixels stay crisp, boxes stay exact), so the
    drawn tags are readable; the image itself when it is large enough."""
    k = max(1, -(-min_side // max(1, min(image.size))))
    if k == 1:
        return image, dict(det)
    return (image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST),
            {**det, "boxes": np.asarray(det["boxes"], np.float32) * k})


def detection_rows(det: Mapping[str, np.ndarray], label_names: Sequence[str]) -> list[dict[str, Any]]:
    """JSON-ready rows: label, score, box [x0, y0, x1, y1]."""
    return [{"label": label_text(int(c), label_names), "score": round(float(s), 4),
             "box": [round(float(v), 1) for v in b]}
            for b, s, c in zip(det["boxes"], det["scores"], det["labels"])]
