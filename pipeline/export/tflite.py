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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.export.errors import ExportError, first_line
from pipeline.export.formats import FormatSpec
from serving.metadata import embed_tflite_metadata
from serving.tflite_inspect import describe_io, describe_outputs, tensor_types  # noqa: F401 (the family's describe_*)

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


def saved_model(graph: Any, workdir: Path, signature: list | None = None) -> Path:
    """The graph as a SavedModel in workdir, written once and shared by every TFLite variant
    (from_keras_model would trace and save it again for each). `signature`: a fixed input
    signature (a detector's graph with decoding + NMS is exported at batch 1)."""
    path = Path(workdir) / f"saved_model_{graph.name}"
    if not (path / "saved_model.pb").is_file():
        with _quiet():
            graph.export(str(path), format="tf_saved_model", verbose=False,
                         **({"input_signature": signature} if signature else {}))
    return path


def convert(model: Any, spec: FormatSpec, options: dict[str, Any], *,
            calibration: np.ndarray | None, workdir: Path, graph: Path | None = None,
            task: Any = None) -> bytes:
    """The .tflite bytes for `spec` (no metadata yet); workdir holds temporary files; `graph`:
    a QAT run's SavedModel, the source of tflite_qat_int8. `task` (pipeline.tasks) gives the
    graph to convert (export_graph: a detector's with decoding + NMS inside) and the file checks
    of its kind of model (check_file); None converts `model` as it is, unchecked (benchmarks)."""
    import tensorflow as tf

    if spec.name == "tflite_qat_int8":
        if graph is None:
            raise ExportError(f"{spec.name}: needs a QAT run's graph (pipeline compress method=qat)")
        conv = tf.lite.TFLiteConverter.from_saved_model(str(graph))
        info = json.loads((graph.parent / "info.json").read_text())
        if info.get("weights") == "per_tensor":   # as the QAT model fake-quantized them
            conv._experimental_disable_per_channel = True
        if not info.get("needs_calibration", True):   # every tensor has its QAT range
            return _convert_qat(conv, spec, options, task)
    else:
        export, signature = task.export_graph(model) if task is not None else (model, None)
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model(export, workdir, signature)))
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
        if options.get("weights") == "per_tensor":   # int8 repair's cheap fix (pipeline.export.repair)
            conv._experimental_disable_per_channel = True
        io_type = options.get("io", "float")
        if io_type != "float":
            conv.inference_input_type = getattr(tf, _IO_DTYPES[io_type])
            conv.inference_output_type = getattr(tf, _IO_DTYPES[io_type])
    elif spec.name != "tflite_fp32":
        raise ExportError(f"{spec.name}: no TFLite conversion recipe")
    return _finish(conv, spec, options, task)


def _convert_qat(conv: Any, spec: FormatSpec, options: dict[str, Any], task: Any) -> bytes:
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
    return _finish(conv, spec, options, task)


def _finish(conv: Any, spec: FormatSpec, options: dict[str, Any], task: Any) -> bytes:
    """Convert; check the weights the name promises and the task's own checks (task None: a
    graph for a benchmark only, unchecked)."""
    try:
        with _quiet():
            data = bytes(conv.convert())
    except Exception as e:  # converter raises ConverterError, ValueError, RuntimeError...
        raise ExportError(f"{spec.name}: TFLite conversion failed: {first_line(e)}") from e
    if task is None:
        return data
    check_weights(data, spec)
    problems = task.check_file("tflite", data, spec, options)
    if problems:
        raise ExportError(f"{spec.name}: {problems[0]}")
    return data


def check_weights(data: bytes, spec: FormatSpec) -> dict[str, int]:
    """The file holds the weight dtype its name promises; returns tensor_types(data)."""
    counts = tensor_types(data)
    if spec.weights != "float32" and not counts.get(spec.weights):
        raise ExportError(f"{spec.name}: the converted file has no {spec.weights} tensors "
                          f"({counts}); its name would promise {spec.weights} weights")
    return counts


def embed(data: bytes, meta: dict[str, Any], standard: Callable[[bytes], bytes] | None = None) -> bytes:
    """Our JSON entry, then `standard` (the standard TFLite metadata and its label file:
    pipeline.export.standard_metadata), then the seal over all of it."""
    return embed_tflite_metadata(data, meta, then=standard)

