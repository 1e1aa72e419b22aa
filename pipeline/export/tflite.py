"""Keras model -> TFLite flatbuffer bytes, for every tflite_* entry of the export table.

Post-training quantization as in the TensorFlow Lite guide ("Post-training quantization";
Jacob et al. 2018 for the integer scheme): fp16 weights, dynamic range (int8 weights, float
activations), and full integer (int8 weights and activations, ranges calibrated on a
representative dataset, TFLITE_BUILTINS_INT8 only so the converter fails instead of leaving
an op in float). Conversion runs in TensorFlow; the file is then checked in LiteRT's
interpreter (the runtime a device uses), which must find the promised tensor dtypes.
"""
from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.export.errors import ExportError, first_line
from pipeline.export.formats import FormatSpec

_IO_DTYPES = {"uint8": "uint8", "int8": "int8"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converter prints a saved-model summary to stdout and MLIR chatter to fd 2."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _representative(images: np.ndarray) -> Any:
    def gen() -> Iterator[list[np.ndarray]]:
        for img in images:                       # (H, W, C) uint8 -> (1, H, W, C) float 0..255
            yield [img[None].astype(np.float32)]
    return gen


def is_detector(model: Any) -> bool:
    from models import get_contract

    return get_contract(model).task == "detection"


def saved_model(model: Any, workdir: Path, *, with_nms: bool = True) -> Path:
    """The model as a SavedModel in workdir, written once and shared by every TFLite variant
    (from_keras_model would trace and save it again for each). A detector is saved with its
    decoding + NMS (pipeline.export.detection) at a fixed batch of 1; with_nms=False saves the
    raw detector (offsets + logits) instead, for bench/detection_latency.py's NMS cost only."""
    path = Path(workdir) / ("saved_model" if with_nms else "saved_model_raw")
    if not (path / "saved_model.pb").is_file():
        with _quiet():
            if is_detector(model):
                import tensorflow as tf

                from pipeline.export.detection import export_model

                shape = (1, *model.inputs[0].shape[1:])
                (export_model(model) if with_nms else model).export(
                    str(path), format="tf_saved_model", verbose=False,
                    input_signature=[tf.TensorSpec(shape, tf.float32)])
            else:
                model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def convert(model: Any, spec: FormatSpec, options: dict[str, Any], *,
            calibration: np.ndarray | None, workdir: Path, graph: Path | None = None,
            with_nms: bool = True) -> bytes:
    """The .tflite bytes for `spec` (no metadata yet); workdir holds temporary files; `graph`:
    a QAT run's SavedModel, the source of tflite_qat_int8. with_nms=False (detectors, benchmark
    only): the same recipe on the raw detector, no decoding/NMS; not an export, not checked."""
    import tensorflow as tf

    if spec.name == "tflite_qat_int8":
        if graph is None:
            raise ExportError(f"{spec.name}: needs a QAT run's graph (pipeline compress method=qat)")
        conv = tf.lite.TFLiteConverter.from_saved_model(str(graph))
        info = json.loads((graph.parent / "info.json").read_text())
        if info.get("weights") == "per_tensor":   # as the QAT model fake-quantized them
            conv._experimental_disable_per_channel = True
        if not info.get("needs_calibration", True):   # every tensor has its QAT range
            return _convert_qat(conv, spec, options, model)
    else:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model(model, workdir, with_nms=with_nms)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]   # a Flex op is an error
    if spec.name == "tflite_fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif spec.name == "tflite_sparse":   # float32 weights, zeros left out (block-sparse encoding)
        conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    elif spec.name == "tflite_dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif spec.name in ("tflite_int8", "tflite_qat_int8"):   # a QAT graph from before QuantNormalize:
        # calibrated as a whole (the converter then re-derives ranges: it matches the graph less)
        if calibration is None or not len(calibration):
            raise ExportError(f"{spec.name}: needs calibration images (calib=<data>)")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(calibration)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = options.get("io", "float")
        if io_type != "float":
            conv.inference_input_type = getattr(tf, _IO_DTYPES[io_type])
            conv.inference_output_type = getattr(tf, _IO_DTYPES[io_type])
    elif spec.name != "tflite_fp32":
        raise ExportError(f"{spec.name}: no TFLite conversion recipe")
    return _finish(conv, spec, options, model, checked=with_nms)


def _convert_qat(conv: Any, spec: FormatSpec, options: dict[str, Any], model: Any) -> bytes:
    """A QAT graph whose every tensor has a learned or exact range (the input and its Rescaling:
    compress.tfmot_ops.QuantNormalize): converted from those ranges alone. No representative
    dataset, as that would calibrate the whole converted model again (mobilenetv2 w0.5: top-1
    agreement with the QAT graph 0.938 without, 0.891 with); TFLITE_BUILTINS_INT8 would demand
    one, so check() is what makes sure every op came out int8."""
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    io_type = options.get("io", "float")
    if io_type != "float":
        conv.inference_input_type = getattr(tf, _IO_DTYPES[io_type])
        conv.inference_output_type = getattr(tf, _IO_DTYPES[io_type])
    return _finish(conv, spec, options, model)


def _finish(conv: Any, spec: FormatSpec, options: dict[str, Any], model: Any, checked: bool = True) -> bytes:
    """Convert; check the file (checked=False: a raw detector twin for the benchmark only)."""
    try:
        with _quiet():
            data = conv.convert()
    except Exception as e:  # converter raises ConverterError, ValueError, RuntimeError...
        raise ExportError(f"{spec.name}: TFLite conversion failed: {first_line(e)}") from e
    if not checked:
        return bytes(data)
    if is_detector(model):
        from pipeline.export.detection import check_tflite

        check_tflite(data, spec)
    else:
        check(data, spec, options)
    return bytes(data)


def tensor_record(detail: dict[str, Any]) -> dict[str, Any]:
    """Interpreter tensor detail -> the artifact metadata's input/output block."""
    scale, zero_point = detail["quantization"]
    quantized = np.dtype(detail["dtype"]).kind in "iu" and scale != 0
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(v) for v in detail["shape"]],
            "scale": float(scale) if quantized else None,
            "zero_point": int(zero_point) if quantized else None}


def describe_io(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data)
    return tensor_record(interp.get_input_details()[0]), tensor_record(interp.get_output_details()[0])


def describe_outputs(data: bytes) -> list[dict[str, Any]]:
    """Every output tensor's metadata record (a detector has four)."""
    from ai_edge_litert.interpreter import Interpreter

    return [tensor_record(d) for d in Interpreter(model_content=data).get_output_details()]


def tensor_types(data: bytes) -> dict[str, int]:
    """Count of tensors per dtype name in the converted graph (e.g. {"int8": 120, "float32": 2})."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    counts: dict[str, int] = {}
    for sub in model.subgraphs:
        for t in sub.tensors:
            key = names.get(t.type, str(t.type))
            counts[key] = counts.get(key, 0) + 1
    return counts


def check_weights(data: bytes, spec: FormatSpec, what: str) -> dict[str, int]:
    """The file holds the weight dtype its name promises; returns tensor_types(data)."""
    counts = tensor_types(data)
    if spec.weights != "float32" and not counts.get(spec.weights):
        raise ExportError(f"{spec.name}: the converted {what} has no {spec.weights} tensors "
                          f"({counts}); its name would promise {spec.weights} weights")
    return counts


def check(data: bytes, spec: FormatSpec, options: dict[str, Any]) -> None:
    """The file holds what its name promises: I/O dtypes, weight dtype, integer activations."""
    inp, out = describe_io(data)
    want = "float32" if options.get("io", "float") == "float" else options["io"]
    for what, rec in (("input", inp), ("output", out)):
        if rec["dtype"] != want:
            raise ExportError(f"{spec.name}: converted {what} is {rec['dtype']}, expected {want}")
    counts = check_weights(data, spec, "file")
    if spec.activations == "int8":
        # float tensors may only be the float I/O and its (de)quantize boundary
        floats = counts.get("float32", 0)
        allowed = 0 if want != "float32" else 2
        if floats > allowed:
            raise ExportError(f"{spec.name}: {floats} float32 tensors left in a full-integer "
                              f"model ({counts})")


def embed(data: bytes, meta: dict[str, Any]) -> bytes:
    from serving.metadata import embed_tflite_metadata

    return embed_tflite_metadata(data, meta)

