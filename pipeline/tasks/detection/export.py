"""Detector export: the Keras SSD + the one decoder (models.decoder) in one graph, for every
detection format.

The detector's raw output (B, A, 4 + C + 1) (models.detector: offsets, then class logits with
background first) is wrapped by `DetectionOutputs`, a Keras layer around models.decoder's
detect_graph (the same function that scores the model during training), whose TensorFlow ops
convert to builtin LiteRT ops and to ONNX (../shared/STACK.md, "Detection export"). Outputs
(fixed, batch 1), in this order:
  boxes (1, K, 4) float32, normalized corners x0, y0, x1, y1 (0..1, "rel_xyxy");
  scores (1, K) float32; classes (1, K) float32 (0-based object classes, whole numbers);
  count (1,) float32 (a whole number). Rows >= count are zero.
classes and count are float32 because MediaPipe's ObjectDetector takes only float32 (or all
uint8) outputs ("Expected output tensor at index 1 to have type UINT8 or FLOAT32, found
INT32"); exact for any class id or count below 2**24. serving casts them back (int32 classes,
int count), so what serving returns is unchanged. serving.tasks.detect runs the decoder's
numpy twin on a .keras file.

Why NON_MAX_SUPPRESSION_V5 and not TFLite_Detection_PostProcess: the custom op exists only in
LiteRT (a dummy in TF, Keras and ONNX), so the ONNX file and the Keras reference would need a
second post-processing path; V5 is one graph for every format, at ~0.06 ms more (STACK.md).
"""
from __future__ import annotations

from typing import Any

from ai_edge_litert import schema_py_generated as schema

from models import get_contract
from models.decoder import OUTPUT_NAMES, DetectionSettings, detect_graph
from serving.tflite_inspect import op_names


def detection_layer(keras: Any, settings: DetectionSettings) -> Any:
    """A DetectionOutputs layer for these settings; the class is made here so that it needs
    Keras only when an export runs."""
    import tensorflow as tf

    anchors = settings.anchors()

    class DetectionOutputs(keras.layers.Layer):
        def call(self, raw):                                        # (1, A, 4 + C + 1)
            boxes, scores, classes, count = detect_graph(raw[0], settings, anchors)
            # the casts come last: an int8 converter would quantize a float tensor that a
            # reshape follows (2 -> 1.99), while a CAST's output is the file's output as it is
            return (boxes[None], scores[None], tf.cast(classes[None], tf.float32),
                    tf.cast(tf.reshape(count, [1]), tf.float32))

    return DetectionOutputs(name="detection_outputs")


def export_model(detector: Any) -> Any:
    """keras.Model: image (1, H, W, C) float 0..255 -> (boxes, scores, classes, count)."""
    import keras

    contract = get_contract(detector)
    inp = keras.Input(tuple(contract.input_shape), batch_size=1, name="image")
    outs = detection_layer(keras, contract.detection)(detector(inp))
    return keras.Model(inp, dict(zip(OUTPUT_NAMES, outs)), name=f"{detector.name}_nms")


def name_outputs(records: list[dict[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    """The converters' output records by role. Converters reorder outputs and TFLite renames
    them, so the role is the record's "key" (a .tflite's signature output key,
    serving.tflite_inspect.describe_outputs) or else its name (ONNX keeps the graph's output
    names): the export graph's OUTPUT_NAMES. ValueError when they are not the four."""
    named = {r.get("key") or r["name"]: {k: v for k, v in r.items() if k != "key"} for r in records}
    if len(records) != 4 or set(named) != set(OUTPUT_NAMES):
        raise ValueError(f"{where}: expected outputs boxes/scores/classes/count, got "
                         f"{[(r['name'], r['dtype'], r['shape']) for r in records]}")
    return {k: named[k] for k in OUTPUT_NAMES}


def tflite_problems(data: bytes, spec: Any) -> list[str]:
    """Builtin ops only, NMS inside, and int8 convolutions for tflite_int8 (the weight dtype the
    name promises is checked for every file by pipeline.export.tflite)."""
    ops = op_names(data)
    bad = [o for o in ops if o.startswith("CUSTOM") or "FLEX" in o]
    if bad:
        return [f"the detector file uses non-builtin ops {bad}"]
    if "NON_MAX_SUPPRESSION_V5" not in ops:
        return [f"no NON_MAX_SUPPRESSION_V5 in the converted file ({ops})"]
    if spec.activations == "int8":
        sub = schema.ModelT.InitFromPackedBuf(data, 0).subgraphs[0]
        conv = [i for i, n in enumerate(ops) if n in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        types = {sub.tensors[op.inputs[0]].type for op in sub.operators if op.opcodeIndex in conv}
        if types != {schema.TensorType.INT8}:
            return [f"convolutions are not all int8 (input types {types})"]
    return []


def onnx_problems(proto: Any) -> list[str]:
    if not any(n.op_type == "NonMaxSuppression" for n in proto.graph.node):
        return ["the converted detector has no NonMaxSuppression node"]
    return []


class RawGraph:
    """For benchmarks only (bench/detection_latency.py): the raw detector (offsets + logits, no
    decoding or NMS) at a fixed batch of 1, through the same converters; its files are not
    checked beyond their weights and are no export."""

    def export_graph(self, model: Any) -> tuple[Any, list | None]:
        import tensorflow as tf

        return model, [tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)]

    def check_file(self, family: str, file: Any, spec: Any, options: dict[str, Any]) -> list[str]:
        return []
