"""Export a trained model to TFLite (fp32, fp16, dynamic-range, full int8) and ONNX (float32 and
static int8), or a QAT run (pipeline.compress) to int8 files made from its QAT graph, gate every
file on held-out images against the model it came from, and write a manifest.

    from pipeline.export import ExportConfig, export
    result = export(ExportConfig(model="runs/r1", formats=("tflite_int8", "onnx")))

CLI: `python -m pipeline export model=runs/r1 formats=tflite_fp32,tflite_int8,onnx io=uint8`.
The format table is formats.FORMATS; converters are tflite.py and onnx.py; the gate is
parity.py; the orchestration (staging, worker process, publish) is core.py.
"""
from __future__ import annotations

from pipeline.export.config import ExportConfig, GateConfig
from pipeline.export.core import ExportResult, export
from pipeline.export.errors import ExportError, GateError, IncompleteExportError
from pipeline.export.formats import FORMATS, FormatSpec

__all__ = ["FORMATS", "ExportConfig", "ExportError", "ExportResult", "FormatSpec", "GateConfig",
           "GateError", "IncompleteExportError", "export"]
