"""Which layers of a full-int8 TFLite file cost the agreement, and the file with them kept float.

TensorFlow Lite's quantization debugger (`tf.lite.experimental.QuantizationDebugger`, guide
"Inspecting quantization errors with quantization debugger"): the model is calibrated once,
then quantized with a NumericVerify op after every quantized op, which runs the float op on
the SAME quantized inputs; so each layer's error is its own, not what earlier layers passed on.
The metric is the guide's rmse/scale: RMS of (dequantized int8 output - float output) in units
of the output's quantization step. Plain rounding gives about 1/sqrt(12) = 0.29; a layer far
above that is the one to suspect. The same debugger makes the selective file: its
`denylisted_nodes` (op output tensor names) stay float, the rest int8
(`get_nondebug_quantized_model`). That file keeps float input/output.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.export.errors import ExportError, first_line
from pipeline.export.tflite import _quiet, _representative

METRIC = "rmse/scale"
SILENT = 1e-6   # RMS of a float output below which the layer is not ranked
METRIC_HELP = ("RMS error of the layer's int8 output against its float op on the same inputs, "
               "in quantization steps (plain rounding: 0.29)")


def _rmse_over_scale(float_out: np.ndarray, quant_out: np.ndarray, scale: float, zero_point: int) -> float:
    """The guide's metric; 0 for a layer whose float output carries no signal (a dead ReLU6
    output calibrates to a scale near 0, and any rounding noise over it would rank first)."""
    f = float_out.astype(np.float64)
    if not scale or np.sqrt(np.mean(f ** 2)) < SILENT:
        return 0.0
    diff = (quant_out.astype(np.float64) - zero_point) * scale - f
    return float(np.sqrt(np.mean(diff ** 2)) / scale)


def layer_name(tensor: str) -> str:
    """The Keras layer a converted op's output tensor comes from: "functional_1/conv2_1/Relu;..."
    -> "conv2" (tracing appends _1 to each scope)."""
    parts = tensor.split(";")[0].split("/")
    name = parts[1] if len(parts) > 2 else parts[0]
    return re.sub(r"_\d+$", "", name)


class TFLiteInt8Debug:
    """One calibration of the SavedModel at `saved_model` on `calibration` (uint8 (n, H, W, C));
    `sample`: the images the per-layer errors are measured on."""

    def __init__(self, saved_model: Path, calibration: np.ndarray, sample: np.ndarray) -> None:
        import tensorflow as tf

        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(calibration)
        self._tf = tf
        options = tf.lite.experimental.QuantizationDebugOptions(
            layer_direct_compare_metrics={METRIC: _rmse_over_scale})
        try:
            with _quiet():
                self.debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=conv, debug_dataset=_representative(sample), debug_options=options)
        except Exception as e:  # the converter raises a variety of types
            raise ExportError("int8 diagnosis: the TFLite quantization debugger failed: "
                              f"{first_line(e)}") from e

    def layers(self) -> list[dict[str, Any]]:
        """Every quantized op, worst first: {"node", "layer", "op", "error", "scale"}."""
        with _quiet():
            self.debugger.run()
        dump = io.StringIO()
        self.debugger.layer_statistics_dump(dump)
        rows = [{"node": r["tensor_name"], "layer": layer_name(r["tensor_name"]), "op": r["op_name"],
                 "error": float(r[METRIC]), "scale": float(r["scale"])}
                for r in csv.DictReader(io.StringIO(dump.getvalue()))]
        return sorted(rows, key=lambda r: -r["error"] if np.isfinite(r["error"]) else 0.0)

    def convert(self, float_nodes: list[str] = (), per_tensor: bool = False) -> bytes:  # type: ignore[assignment]
        """The quantized file with `float_nodes` (op output tensor names) kept float."""
        tf = self._tf
        self.debugger.converter._experimental_disable_per_channel = per_tensor
        self.debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(float_nodes))
        try:
            with _quiet():
                return bytes(self.debugger.get_nondebug_quantized_model())
        except Exception as e:
            raise ExportError(f"int8 repair: TFLite selective quantization failed: {first_line(e)}") from e
