"""The one box decoder: a detector's raw outputs -> boxes, scores, classes, count.

Training-time evaluation (metrics.json, the val mAP that picks the checkpoint), the exported
files (the graph inside every .tflite/.onnx), `.keras` serving and the demo all decode with
this module, so the number a run reports is the number its files ship:

    settings = DetectionSettings.of(contract)          # = contract.detection
    boxes, scores, classes, count = detect_graph(raw, settings)        # TensorFlow ops, one image
    boxes, scores, classes, count = detect_numpy(raw, settings, nms)   # the numpy twin (serving)

The contract's `encoding` says what one image's raw output holds and how it is read:
- "center_offsets" (SSD, models.detector): (A, 4 + C + 1), centre offsets then class logits with
  background at 0: softmax over the C + 1 classes -> the best OBJECT class per anchor (score,
  class) -> offsets -> corners against the anchors (SSD eq. 2 with the variances, d2l 14.4.3);
- "ltrb_dfl" (YOLO, models.yolo): (A, 4 * R + C), per anchor POINT (a cell centre; its anchor
  box is the cell's stride-sized square) the distances to the box's left, top, right, bottom
  sides in stride units as R-bin distributions (DFL, Li et al. 2020: softmax, then the expected
  bin 0..R-1), then C class logits read with a sigmoid (no background class): score = sigmoid of
  the best logit, class = its index;
then, for both:
  -> [pre_nms_topk: keep the best-scoring anchors only] -> corners -> clip 0..1
  -> NMS per class in one call: boxes shifted by 2 * class, so boxes of different classes never
     overlap (NonMaxSuppressionV5 in the graph, ONNX Runtime's NonMaxSuppression in the twin:
     greedy by score, candidates score > score_threshold, IoU > iou_threshold suppresses)
  -> the K = max_detections survivors, zero-padded, with NMS's own count.

Why one class per anchor and per-class NMS (and not class-agnostic NMS, nor every
(anchor, class) pair): per-class NMS keeps two touching objects of different classes (a
class-agnostic NMS drops the weaker one); one class per anchor keeps NMS to A candidates in a
single builtin op call (A x C pairs would multiply its cost by C) and gives one label per box,
which is what an app draws. COCO-style multi-label decoding scores higher mostly through
low-score second-choice boxes that no app shows (the main job's SSD: mAP@.5 0.771 multi-label at
score 0.01 vs 0.719 as shipped) - so that number is no longer reported.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models import boxes as B

ENCODINGS = ("center_offsets", "ltrb_dfl")
CLASS_OFFSET = 2.0    # boxes lie in 0..1 after clipping: a shift of 2 per class never overlaps
MAX_LOG_SIZE = 10.0   # exp() of a wild size offset is capped, no inf in the graph


@dataclass(frozen=True)
class DetectionSettings:
    """A detector contract's detection block, typed (DataContract.detection)."""
    anchor_spec: Mapping[str, Any]
    variances: tuple[float, float]
    score_threshold: float
    iou_threshold: float
    max_detections: int
    match_iou: float = 0.5
    pre_nms_topk: int | None = None
    num_anchors: int = 0
    stored_anchors: tuple = field(default=(), repr=False)   # rows of 4 when the contract has them
    encoding: str = "center_offsets"   # | "ltrb_dfl" (ENCODINGS)
    reg_max: int = 0                   # ltrb_dfl: bins per side distribution (distances 0..R-1 strides)

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown box encoding {self.encoding!r}; known: {', '.join(ENCODINGS)}")
        if self.encoding == "ltrb_dfl" and self.reg_max < 2:
            raise ValueError(f"ltrb_dfl needs reg_max >= 2, got {self.reg_max}")

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> DetectionSettings:
        nms, enc = extra["nms"], extra["encoding"]
        return cls(anchor_spec=extra["anchor_spec"], encoding=enc["type"], reg_max=int(enc.get("reg_max", 0)),
                   variances=tuple(float(v) for v in enc.get("variances", B.VARIANCES)),
                   score_threshold=float(nms["score_threshold"]),
                   iou_threshold=float(nms["iou_threshold"]),
                   max_detections=int(nms["max_detections"]),
                   match_iou=float(extra.get("match_iou", 0.5)),
                   pre_nms_topk=int(nms["pre_nms_topk"]) if nms.get("pre_nms_topk") else None,
                   num_anchors=int(extra.get("num_anchors", 0)),
                   stored_anchors=tuple(map(tuple, extra.get("anchors", ()))))

    @property
    def box_channels(self) -> int:
        """Raw channels per anchor before the class scores: 4 offsets, or 4 * reg_max bins."""
        return 4 * self.reg_max if self.encoding == "ltrb_dfl" else 4

    def raw_channels(self, num_classes: int) -> int:
        """Width of one anchor's raw output row: 4 + C + 1 (SSD) or 4 * reg_max + C (YOLO)."""
        return self.box_channels + num_classes + (self.encoding == "center_offsets")

    def encoding_block(self) -> dict[str, Any]:
        """The contract's / metadata's "encoding" block."""
        if self.encoding == "ltrb_dfl":
            return ltrb_encoding(self.reg_max)
        return {"type": self.encoding, "variances": list(self.variances)}

    def nms_block(self) -> dict[str, Any]:
        """The settings as the contract's and the metadata's "nms" block."""
        out = {"score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
               "max_detections": self.max_detections}
        return {**out, "pre_nms_topk": self.pre_nms_topk} if self.pre_nms_topk else out

    def anchors(self) -> np.ndarray:
        """float32 (A, 4) normalised corner anchors (stored, else regenerated from the spec)."""
        if self.stored_anchors:
            return np.asarray(self.stored_anchors, np.float32).reshape(-1, 4)
        return make_anchors(self.anchor_spec)


def ltrb_encoding(reg_max: int) -> dict[str, Any]:
    """The "encoding" block of an anchor-point detector (models.yolo)."""
    return {"type": "ltrb_dfl", "reg_max": reg_max, "scores": "sigmoid",
            "units": "anchor box sides (= the cell's stride)"}


def make_anchors(spec: Mapping[str, Any]) -> np.ndarray:
    """float32 (A, 4) normalised corner anchors from a contract's anchor spec, scales in order."""
    return np.concatenate([B.multibox_prior(h, w, sizes, spec["ratios"], spec["aspect"])
                           for (h, w), sizes in zip(spec["feature_maps"], spec["sizes"])])


def _topk(settings: DetectionSettings, num_anchors: int) -> int:
    return min(settings.pre_nms_topk or num_anchors, num_anchors)


# ------------------------------------------------------------------ the graph (TensorFlow ops)


def scores_graph(raw: Any, settings: DetectionSettings) -> tuple[Any, Any]:
    """raw (A, ...) -> best object score (A,) and its class (A,) int32, per the encoding."""
    import tensorflow as tf

    logits = raw[:, settings.box_channels:]
    if settings.encoding == "ltrb_dfl":   # sigmoid is monotone: the best logit is the best score
        return (tf.sigmoid(tf.reduce_max(logits, axis=-1)),
                tf.argmax(logits, axis=-1, output_type=tf.int32))
    probs = tf.nn.softmax(logits, axis=-1)[:, 1:]                         # (A, C) objects only
    return tf.reduce_max(probs, axis=-1), tf.argmax(probs, axis=-1, output_type=tf.int32)


def dfl_distances(dist: Any, reg_max: int) -> Any:
    """(..., 4 * R) bin logits -> (..., 4) expected distances in bins: softmax, then sum p_i * i as
    one matrix product with the constant (0..R-1) column (int8 files: one FULLY_CONNECTED that
    accumulates in int32, not a MUL + SUM that rounds every product to 8 bits)."""
    import tensorflow as tf

    lead = tf.shape(dist)[:-1]
    p = tf.nn.softmax(tf.reshape(dist, [-1, reg_max]), axis=-1)           # (N * 4, R)
    d = tf.matmul(p, tf.range(reg_max, dtype=tf.float32)[:, None])        # (N * 4, 1)
    return tf.reshape(d, tf.concat([lead, [4]], 0))


def boxes_graph(box_raw: Any, a_xy: Any, a_wh: Any, settings: DetectionSettings) -> Any:
    """box_raw (A, box_channels), anchor centres and sizes (A, 2) -> corners (A, 4) clipped 0..1."""
    import tensorflow as tf

    if settings.encoding == "ltrb_dfl":   # clipped as a_xy -/+ min(distance, room to the border):
        d = dfl_distances(box_raw, settings.reg_max) * tf.tile(a_wh, [1, 2])   # (A, 4), the same
        lo = a_xy - tf.minimum(d[:, :2], a_xy)           # as clip(corner, 0, 1), but every tensor
        hi = a_xy + tf.minimum(d[:, 2:], 1.0 - a_xy)     # stays in 0..1 (int8 files: 1/255 steps)
        return tf.concat([lo, hi], -1)
    v0, v1 = settings.variances
    xy = box_raw[:, :2] * v0 * a_wh + a_xy                                # (A, 2) centres
    wh = tf.exp(tf.minimum(box_raw[:, 2:4] * v1, MAX_LOG_SIZE)) * a_wh     # (A, 2) sizes
    return tf.clip_by_value(tf.concat([xy - wh / 2, xy + wh / 2], -1), 0.0, 1.0)


def detect_graph(raw: Any, settings: DetectionSettings, anchors: np.ndarray | None = None
                 ) -> tuple[Any, Any, Any, Any]:
    """One image's raw (A, channels) -> boxes (K, 4) float32 normalised x0, y0, x1, y1, scores
    (K,), classes (K,) int32, count () int32; rows >= count are zero. Builtin LiteRT ops and
    ONNX-convertible ops only (SOFTMAX or LOGISTIC, ARG_MAX, [TOPK_V2, GATHER], EXP,
    NON_MAX_SUPPRESSION_V5)."""
    import tensorflow as tf

    anchors = settings.anchors() if anchors is None else anchors
    a_wh = tf.constant(anchors[:, 2:] - anchors[:, :2])                   # (A, 2)
    a_xy = tf.constant((anchors[:, :2] + anchors[:, 2:]) / 2)             # (A, 2)
    k = settings.max_detections
    topk = _topk(settings, len(anchors))
    raw = tf.cast(raw, tf.float32)
    score, cls = scores_graph(raw, settings)                              # (A,), (A,)
    box_raw = raw[:, :settings.box_channels]
    if topk < len(anchors):   # only the best anchors are decoded and enter NMS: (A,) -> (T,)
        score, best = tf.math.top_k(score, k=topk)
        cls, box_raw = tf.gather(cls, best), tf.gather(box_raw, best)
        a_wh, a_xy = tf.gather(a_wh, best), tf.gather(a_xy, best)
    boxes = boxes_graph(box_raw, a_xy, a_wh, settings)                    # (A, 4)
    shifted = boxes + CLASS_OFFSET * tf.cast(cls, tf.float32)[:, None]
    sel, sel_scores, count = tf.raw_ops.NonMaxSuppressionV5(
        boxes=shifted, scores=score, max_output_size=k, iou_threshold=settings.iou_threshold,
        score_threshold=settings.score_threshold, soft_nms_sigma=0.0,
        pad_to_max_output_size=True)                                      # (K,), (K,), ()
    valid = tf.range(k) < count                                           # (K,) from NMS's own count
    return (tf.where(valid[:, None], tf.gather(boxes, sel), 0.0), tf.where(valid, sel_scores, 0.0),
            tf.where(valid, tf.gather(cls, sel), 0), tf.cast(count, tf.int32))


def detect_graph_batch(raw: Any, settings: DetectionSettings) -> tuple[Any, Any, Any, Any]:
    """detect_graph over a batch (B, A, channels) -> (B, K, 4), (B, K), (B, K), (B,)."""
    import tensorflow as tf

    anchors = settings.anchors()
    k = settings.max_detections
    return tf.map_fn(lambda r: detect_graph(r, settings, anchors), tf.cast(raw, tf.float32),
                     fn_output_signature=(tf.TensorSpec([k, 4], tf.float32), tf.TensorSpec([k], tf.float32),
                                          tf.TensorSpec([k], tf.int32), tf.TensorSpec([], tf.int32)))


# ------------------------------------------------------------------ the numpy twin (no TensorFlow)

Nms = Callable[..., np.ndarray]   # (boxes, scores, *, iou_threshold, score_threshold, max_detections) -> kept


def decode_numpy(raw: np.ndarray, anchors: np.ndarray, settings: DetectionSettings
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """raw (A, channels) -> boxes (A, 4) clipped corners, best object score (A,), class (A,)."""
    raw = np.asarray(raw, np.float32)
    nb = settings.box_channels
    a_wh = anchors[:, 2:] - anchors[:, :2]
    a_xy = (anchors[:, :2] + anchors[:, 2:]) / 2
    if settings.encoding == "ltrb_dfl":
        logits = raw[:, nb:]
        score = (1 / (1 + np.exp(-logits.max(1)))).astype(np.float32)
        cls = logits.argmax(1).astype(np.int32)
        d = raw[:, :nb].reshape(len(raw), 4, settings.reg_max)
        p = np.exp(d - d.max(-1, keepdims=True))
        ltrb = (p / p.sum(-1, keepdims=True) * np.arange(settings.reg_max, dtype=np.float32)).sum(-1)
        lo, hi = a_xy - ltrb[:, :2] * a_wh, a_xy + ltrb[:, 2:] * a_wh
        return np.clip(np.concatenate([lo, hi], 1), 0.0, 1.0), score, cls
    logits = raw[:, 4:] - raw[:, 4:].max(1, keepdims=True)
    probs = np.exp(logits)
    probs = (probs / probs.sum(1, keepdims=True))[:, 1:]                  # (A, C) objects only
    score, cls = probs.max(1), probs.argmax(1).astype(np.int32)           # (A,), (A,)
    v0, v1 = settings.variances
    xy = raw[:, :2] * np.float32(v0) * a_wh + a_xy
    wh = np.exp(np.minimum(raw[:, 2:4] * np.float32(v1), MAX_LOG_SIZE)) * a_wh
    return np.clip(np.concatenate([xy - wh / 2, xy + wh / 2], 1), 0.0, 1.0), score, cls


def detect_numpy(raw: np.ndarray, settings: DetectionSettings, nms: Nms,
                 anchors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The numpy twin of detect_graph (tests/test_decoder.py checks them equal). `nms` is the
    NMS op to call (serving.nms.nms: ONNX Runtime's NonMaxSuppression, the same semantics as
    NonMaxSuppressionV5); models/ does not pick a runtime."""
    anchors = settings.anchors() if anchors is None else anchors
    boxes, score, cls = decode_numpy(raw, anchors, settings)
    topk = _topk(settings, len(anchors))
    if topk < len(anchors):   # as tf.math.top_k: best first, the lower index first on ties
        best = np.argsort(-score, kind="stable")[:topk]
        boxes, score, cls = boxes[best], score[best], cls[best]
    k = settings.max_detections
    shifted = boxes + np.float32(CLASS_OFFSET) * cls.astype(np.float32)[:, None]
    keep = nms(shifted, score, iou_threshold=settings.iou_threshold,
               score_threshold=settings.score_threshold, max_detections=k)
    out_b, out_s, out_c = np.zeros((k, 4), np.float32), np.zeros(k, np.float32), np.zeros(k, np.int32)
    n = len(keep)
    out_b[:n], out_s[:n], out_c[:n] = boxes[keep], score[keep], cls[keep]
    return out_b, out_s, out_c, n


# ------------------------------------------------------------------ what an exported file holds

OUTPUT_NAMES = ("boxes", "scores", "classes", "count")
BOX_FORMAT = "rel_xyxy"   # normalized x0, y0, x1, y1


def metadata_block(settings: DetectionSettings) -> dict[str, Any]:
    """The artifact metadata's "detection" block: the outputs and the settings baked in."""
    return {"outputs": {"boxes": "(1, K, 4) float32 normalized x0, y0, x1, y1",
                        "scores": "(1, K) float32",
                        "classes": "(1, K) float32 whole numbers, 0-based into labels",
                        "count": "(1,) float32 valid rows; rows >= count are zero"},
            "box_format": BOX_FORMAT, "nms": settings.nms_block(), "nms_op": "NonMaxSuppressionV5",
            "per_class": "class offset (boxes + 2 * class), best class per anchor",
            "encoding": settings.encoding_block(),
            "anchor_spec": dict(settings.anchor_spec), "num_anchors": settings.num_anchors,
            "anchors": "regenerate with models.decoder.make_anchors(anchor_spec)"}
