"""Non-maximum suppression through ONNX Runtime's NonMaxSuppression op - one implementation for
the .keras detector's decoding (serving.tasks.detect.decode_nms) and the demo's IoU slider.

    keep = nms(boxes, scores, classes, iou_threshold=0.45, score_threshold=0.3, max_detections=100)

The graph is serving/nms.onnx (one node, written by serving.nms_graph with the `onnx` package,
shipped as package data), so an edge install runs it with onnxruntime alone. Semantics, the
same as the exported files' NonMaxSuppressionV5 (tests/test_nms.py checks both on ties):
greedy in score order; a box is a candidate only when score > score_threshold; it is dropped
when its IoU with an already kept box is > iou_threshold (IoU exactly at the threshold keeps
it); at most max_detections are kept. Class-aware the way the files do it: each box is shifted
by `offset * class` before the op (offset 2.0 for boxes inside 0..1, as in
pipeline.tasks.detection.export; 2 * the largest |coordinate| otherwise), so boxes of different
classes can never overlap and one op call does per-class NMS.
"""
from __future__ import annotations

import functools
import threading
from importlib import resources

import numpy as np

GRAPH = "nms.onnx"


@functools.cache
def _session():
    """The ONNX Runtime session of serving/nms.onnx (one per process; Run is thread-safe)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    data = resources.files("serving").joinpath(GRAPH).read_bytes()
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


_LOCK = threading.Lock()   # the session is built once even when two threads ask at once


def class_offset(boxes: np.ndarray) -> float:
    """How far apart the class bands are: 2.0 for normalized boxes (the files' constant)."""
    span = float(np.abs(boxes).max()) if boxes.size else 1.0
    return 2.0 * max(1.0, span)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None = None, *,
        iou_threshold: float, score_threshold: float | None = None,
        max_detections: int | None = None) -> np.ndarray:
    """int64 indices into boxes (N, 4) x0, y0, x1, y1 of the boxes kept, best score first.
    classes (N,) ints makes it class-aware; score_threshold None keeps every score."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"nms: iou_threshold must be in 0..1, got {iou_threshold}")
    k = len(boxes) if max_detections is None else int(max_detections)
    if not len(boxes) or k <= 0:
        return np.zeros(0, np.int64)
    if classes is not None:
        classes = np.asarray(classes).reshape(-1)
        if len(classes) != len(boxes):
            raise ValueError(f"nms: {len(boxes)} boxes but {len(classes)} classes")
        boxes = boxes + np.float32(class_offset(boxes)) * classes.astype(np.float32)[:, None]
    feed = {"boxes": boxes[None], "scores": scores[None, None],                  # (1, N, 4), (1, 1, N)
            "max_output": np.array([k], np.int64),
            "iou_threshold": np.array([iou_threshold], np.float32),
            "score_threshold": np.array([-np.inf if score_threshold is None else score_threshold],
                                        np.float32)}
    with _LOCK:
        session = _session()
    (selected,) = session.run(None, feed)                                        # (M, 3)
    return selected[:, 2].astype(np.int64)
