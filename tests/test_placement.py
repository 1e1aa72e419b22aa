"""Accelerator placement (pipeline.export.placement): which ops of an exported file the LiteRT GPU
delegate would run and which stay on the CPU, and ORT mobile's verdicts; recorded in every
manifest row, shown in the report, never a gate."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.export import placement


def _tiny_classifier(batch: int | None, flatten: bool, fp16: bool = False) -> bytes:
    """A float conv net with hand-known ops: MUL/ADD (0..255 -> normalized), CONV_2D, then
    MEAN (global pooling) or RESHAPE (flatten), FULLY_CONNECTED, SOFTMAX (fp16: float16 weights,
    a DEQUANTIZE in front of each)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), batch_size=batch)
    x = keras.layers.Rescaling(1 / 127.5, -1)(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x) if flatten else keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    conv = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out))
    if fp16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    return conv.convert()


def test_float_classifier_is_full_and_a_dynamic_batch_flatten_is_not():
    full = placement.tflite_gpu(_tiny_classifier(1, flatten=True))
    assert full["summary"] == "full" and full["cpu_ops"] == [] and full["gpu_ops"] == full["ops"]
    assert full["delegated_by_default"] == full["ops"]
    pooled = placement.tflite_gpu(_tiny_classifier(None, flatten=False))
    assert pooled["summary"] == "full"
    # float16 weights: the delegate reads them as constants (it skips their DEQUANTIZE), so the
    # conv and dense layers keep one runtime input each
    fp16 = placement.tflite_gpu(_tiny_classifier(1, flatten=True, fp16=True))
    assert fp16["summary"] == "full" and fp16["ops"] > full["ops"]
    # batch None + Flatten: the converter computes the reshape target at run time (SHAPE ->
    # STRIDED_SLICE -> PACK, int32 tensors): the delegate takes none of those four ops, and by
    # default only the larger run of GPU ops (the convs before them)
    dyn = placement.tflite_gpu(_tiny_classifier(None, flatten=True))
    cpu = [c["op"] for c in dyn["cpu_ops"]]
    assert cpu[0] == "SHAPE" and set(cpu) <= {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"}
    assert dyn["summary"].startswith(f"partial: {len(cpu)} ops on CPU (SHAPE")
    assert "only NMS" not in dyn["summary"]
    assert dyn["gpu_ops"] == dyn["ops"] - len(cpu) == sum(dyn["gpu_runs"])


@pytest.mark.parametrize("fmt", ["tflite_fp32", "tflite_int8"])
def test_detector_tflite_names_nms_as_a_cpu_op(det_files, fmt):
    """TF 2.21's Analyzer(gpu_compatibility=True) calls this file "compatible"; the delegate's own
    rules do not take NON_MAX_SUPPRESSION_V5, nor the int32 tensors around it."""
    rec = placement.check(det_files[fmt])
    cpu = {c["op"]: c["why"] for c in rec["cpu_ops"]}
    assert cpu["NON_MAX_SUPPRESSION_V5"] == "not supported by the GPU delegate"
    assert cpu["GATHER"].startswith("INT32 runtime tensor")   # picks boxes by NMS's int32 indices
    assert rec["summary"].startswith(f"partial: {len(rec['cpu_ops'])} ops on CPU (NON_MAX_SUPPRESSION_V5, ")
    # the backbone and heads run on the GPU; an int8 file's QUANTIZE/DEQUANTIZE and int8 tensors
    # too (the delegate dequantizes them: it computes in float)
    assert not {"CONV_2D", "DEPTHWISE_CONV_2D", "QUANTIZE", "DEQUANTIZE"} & set(cpu)
    assert rec["delegated_by_default"] > rec["ops"] / 2


def test_detector_onnx_gets_ort_mobiles_nonmaxsuppression_verdict(det_files):
    rec = placement.check(det_files["onnx"])
    assert set(rec["eps"]) == {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"}
    for ep in rec["eps"].values():
        assert "NonMaxSuppression" in ep["unsupported_ops"] and ep["as_is"] in ("YES", "MAYBE", "NO")
    assert rec["summary"].startswith(f"ORT mobile: NNAPI {rec['eps']['NNAPI']['as_is']}")
    assert "; unsupported: NonMaxSuppression, " in rec["summary"]


def test_a_check_that_fails_is_unknown_not_an_error(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    assert placement.check(bad)["summary"].startswith("unknown: ")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx file")
    assert placement.check(bad)["summary"].startswith("unknown: ")


def test_every_manifest_row_has_its_placement(digits_export):
    rows = {a["format"]: a for a in digits_export.artifacts}
    assert {f for f in rows if f.startswith("tflite")} and "onnx" in rows
    for fmt, row in rows.items():
        summary = row["accelerator"]["summary"]
        if fmt.startswith("tflite"):
            # resnet18 on digits: global pooling, fixed graph: the delegate takes every op
            assert row["accelerator"]["runtime"] == "LiteRT GPU delegate", fmt
            assert summary == "full", (fmt, summary)
        else:
            assert summary.startswith("ORT mobile: NNAPI "), (fmt, summary)


def test_summary_says_when_nms_is_the_only_cpu_op():
    nms = {"index": 7, "op": "NON_MAX_SUPPRESSION_V5", "why": "not supported by the GPU delegate"}
    assert placement._gpu_summary([nms]) == \
        "partial: 1 op on CPU (NON_MAX_SUPPRESSION_V5); only NMS on CPU"
    ops = [{"index": i, "op": op, "why": ""} for i, op in
           enumerate(["SHAPE", "NON_MAX_SUPPRESSION_V5", "GATHER", "GATHER", "ARG_MAX", "CAST", "LESS"])]
    assert placement._gpu_summary(ops) == \
        "partial: 7 ops on CPU (NON_MAX_SUPPRESSION_V5, SHAPE, GATHER, ARG_MAX, +2 more)"
