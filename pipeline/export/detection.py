"""Detector export: the Keras SSD + box decoding + NMS in one graph, for every detection format.

The detector's raw output (B, A, 4 + C + 1) (models.detector: offsets, then class logits with
background first) is wrapped by `DetectionOutputs`, a Keras layer of TensorFlow ops that convert
to builtin LiteRT ops and to ONNX (../shared/STACK.md, "Detection export"):
  softmax -> best object class per anchor (score, class) -> [optional: keep the pre_nms_topk
  best-scoring anchors, TOPK_V2 + GATHER, when the contract's nms block sets pre_nms_topk]
  -> decode offsets against the anchors (models.boxes, variances) -> clip to 0..1
  -> NonMaxSuppressionV5 on boxes shifted by 2 * class (so boxes of different classes never
  overlap: per-class NMS in one op call)
  -> gather the K = max_detections survivors (padded, masked with NMS's own count).
Outputs (fixed, batch 1), in this order:
  boxes (1, K, 4) float32, normalized corners x0, y0, x1, y1 (0..1, "rel_xyxy");
  scores (1, K) float32; classes (1, K) int32 (0-based object classes); count (1,) int32.
Rows >= count are zero. serving.detection does the same in numpy for a .keras file (without the
top-k, which is file-only: equal results while at most pre_nms_topk anchors pass score_threshold).

Why NON_MAX_SUPPRESSION_V5 and not TFLite_Detection_PostProcess: the custom op exists only in
LiteRT (a dummy in TF, Keras and ONNX), so the ONNX file and the Keras reference would need a
second post-processing path; V5 is one graph for every format, at ~0.06 ms more (STACK.md).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.export.errors import ExportError
from serving.detection import BOX_FORMAT, OUTPUT_NAMES, metadata_block  # noqa: F401 (re-exported)


def settings(contract: Any) -> dict[str, Any]:
    """What the file bakes in: anchors, variances, thresholds, K (from the detector's contract)."""
    from models.detector import anchors_of

    extra = contract.extra
    nms = extra["nms"]
    return {"anchors": anchors_of(contract), "variances": tuple(extra["encoding"]["variances"]),
            "num_classes": contract.num_classes, "score_threshold": float(nms["score_threshold"]),
            "iou_threshold": float(nms["iou_threshold"]), "max_detections": int(nms["max_detections"]),
            "pre_nms_topk": int(nms["pre_nms_topk"]) if nms.get("pre_nms_topk") else None}


def detection_layer(keras: Any, cfg: dict[str, Any]) -> Any:
    """A DetectionOutputs layer instance for `cfg` (settings()); built here so the class needs
    Keras only when an export runs."""
    import tensorflow as tf

    anchors = np.asarray(cfg["anchors"], np.float32)
    a_wh = np.stack([anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]], 1)   # (A, 2)
    a_xy = (anchors[:, :2] + anchors[:, 2:]) / 2                                         # (A, 2)
    v0, v1 = cfg["variances"]
    k = cfg["max_detections"]
    topk = min(cfg.get("pre_nms_topk") or len(anchors), len(anchors))

    class DetectionOutputs(keras.layers.Layer):
        def call(self, raw):                                        # (1, A, 4 + C + 1)
            raw = raw[0]
            probs = tf.nn.softmax(raw[:, 4:], axis=-1)[:, 1:]       # (A, C) objects only
            score = tf.reduce_max(probs, axis=-1)                   # (A,)
            cls = tf.argmax(probs, axis=-1, output_type=tf.int32)   # (A,)
            off, anc_wh, anc_xy = raw[:, :4], a_wh, a_xy
            if topk < len(anchors):   # only the best anchors are decoded and enter NMS: (A,) -> (T,)
                score, best = tf.math.top_k(score, k=topk)
                cls, off = tf.gather(cls, best), tf.gather(off, best)
                anc_wh, anc_xy = tf.gather(a_wh, best), tf.gather(a_xy, best)
            xy = off[:, :2] * v0 * anc_wh + anc_xy                  # (A, 2) centres
            wh = tf.exp(tf.minimum(off[:, 2:4] * v1, 10.0)) * anc_wh  # (A, 2) sizes
            boxes = tf.clip_by_value(tf.concat([xy - wh / 2, xy + wh / 2], -1), 0.0, 1.0)  # (A, 4)
            shifted = boxes + 2.0 * tf.cast(cls, tf.float32)[:, None]
            sel, sel_scores, count = tf.raw_ops.NonMaxSuppressionV5(
                boxes=shifted, scores=score, max_output_size=k, iou_threshold=cfg["iou_threshold"],
                score_threshold=cfg["score_threshold"], soft_nms_sigma=0.0,
                pad_to_max_output_size=True)                        # (K,), (K,), ()
            valid = tf.range(k) < count                             # (K,) from NMS's own count
            out_boxes = tf.where(valid[:, None], tf.gather(boxes, sel), 0.0)
            out_scores = tf.where(valid, sel_scores, 0.0)
            out_cls = tf.where(valid, tf.gather(cls, sel), 0)
            return (out_boxes[None], out_scores[None], out_cls[None],
                    tf.reshape(tf.cast(count, tf.int32), [1]))

    return DetectionOutputs(name="detection_outputs")


def export_model(detector: Any) -> Any:
    """keras.Model: image (1, H, W, C) float 0..255 -> (boxes, scores, classes, count)."""
    import keras

    from models import get_contract

    contract = get_contract(detector)
    inp = keras.Input(tuple(contract.input_shape), batch_size=1, name="image")
    outs = detection_layer(keras, settings(contract))(detector(inp))
    model = keras.Model(inp, dict(zip(OUTPUT_NAMES, outs)), name=f"{detector.name}_nms")
    return model


def name_outputs(records: list[dict[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    """The converters' output records by role. Converters reorder and rename outputs, so the
    role comes from shape and dtype, which the four outputs never share: boxes (1, K, 4) float,
    scores (1, K) float, classes (1, K) int32, count (1,) int32."""
    def role(r: dict[str, Any]) -> str | None:
        rank, floating = len(r["shape"]), r["dtype"].startswith("float")
        return {(3, True): "boxes", (2, True): "scores", (2, False): "classes",
                (1, False): "count"}.get((rank, floating))

    named = {role(r): r for r in records}
    if len(records) != 4 or set(named) != set(OUTPUT_NAMES):
        raise ExportError(f"{where}: expected outputs boxes/scores/classes/count, got "
                          f"{[(r['name'], r['dtype'], r['shape']) for r in records]}")
    return {k: named[k] for k in OUTPUT_NAMES}


def op_names(data: bytes) -> list[str]:
    """Builtin operator names of a .tflite (CUSTOM and FLEX_* marked as such)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for code in model.operatorCodes:
        b = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = names.get(b, str(b))
        if name == "CUSTOM":
            name = f"CUSTOM:{code.customCode.decode() if code.customCode else '?'}"
        out.append(name)
    return out


def check_tflite(data: bytes, spec: Any) -> None:
    """Builtin ops only, NMS inside, the weight dtype the name promises (float16 for
    tflite_fp16, int8 for tflite_dynamic/int8), and int8 convs for tflite_int8."""
    from pipeline.export.tflite import check_weights

    ops = op_names(data)
    bad = [o for o in ops if o.startswith("CUSTOM") or "FLEX" in o]
    if bad:
        raise ExportError(f"{spec.name}: the detector file uses non-builtin ops {bad}")
    if "NON_MAX_SUPPRESSION_V5" not in ops:
        raise ExportError(f"{spec.name}: no NON_MAX_SUPPRESSION_V5 in the converted file ({ops})")
    check_weights(data, spec, "detector")
    if spec.activations == "int8":
        from ai_edge_litert import schema_py_generated as schema

        model = schema.ModelT.InitFromPackedBuf(data, 0)
        sub = model.subgraphs[0]
        conv = [i for i, n in enumerate(ops) if n in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        types = {sub.tensors[op.inputs[0]].type for op in sub.operators if op.opcodeIndex in conv}
        if types != {schema.TensorType.INT8}:
            raise ExportError(f"{spec.name}: convolutions are not all int8 (input types {types})")
