"""Keras model -> ONNX bytes through tf2onnx (Keras 3 `model.export(format="onnx")`).

The graph keeps a dynamic batch dimension (N, H, W, C) and float32 I/O; `opset` comes from
the export table's option. The result must pass `onnx.checker.check_model` (full check,
shape inference included) before it is accepted.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.export.errors import ExportError, first_line
from pipeline.export.formats import FormatSpec


def convert(model: Any, spec: FormatSpec, options: dict[str, Any], *,
            calibration: np.ndarray | None, workdir: Path) -> bytes:
    """The .onnx bytes (no metadata yet); `calibration` is unused (float format)."""
    import onnx

    from pipeline.export.tflite import is_detector

    tmp = Path(workdir) / f".{spec.name}.convert.onnx"
    detector = is_detector(model)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            if detector:   # decoding + NMS inside (ONNX NonMaxSuppression), batch fixed at 1
                import tensorflow as tf

                from pipeline.export.detection import export_model

                export_model(model).export(
                    str(tmp), format="onnx", verbose=False, opset_version=int(options["opset"]),
                    input_signature=[tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)])
            else:
                model.export(str(tmp), format="onnx", verbose=False, opset_version=int(options["opset"]))
        proto = onnx.load(str(tmp))
    except Exception as e:  # tf2onnx raises a variety of types
        raise ExportError(f"{spec.name}: ONNX conversion failed: {first_line(e)}") from e
    finally:
        tmp.unlink(missing_ok=True)
    got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != int(options["opset"]):
        raise ExportError(f"{spec.name}: asked for opset {options['opset']}, tf2onnx wrote {got}")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{spec.name}: onnx.checker rejected the model: {first_line(e)}") from e
    if detector and not any(n.op_type == "NonMaxSuppression" for n in proto.graph.node):
        raise ExportError(f"{spec.name}: the converted detector has no NonMaxSuppression node")
    return proto.SerializeToString()


def _value_record(value: Any) -> dict[str, Any]:
    import onnx

    t = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
    return {"name": value.name, "dtype": dtype, "shape": [1, *dims[1:]] if dims else dims,
            "scale": None, "zero_point": None}


def describe_io(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input/output blocks of the metadata; the dynamic batch is recorded as 1 (one image)."""
    import onnx

    graph = onnx.load_from_string(data).graph
    return _value_record(graph.input[0]), _value_record(graph.output[0])


def describe_outputs(data: bytes) -> list[dict[str, Any]]:
    """Every output's metadata record (a detector has four)."""
    import onnx

    return [_value_record(v) for v in onnx.load_from_string(data).graph.output]


def embed(data: bytes, meta: dict[str, Any]) -> bytes:
    import onnx

    from serving.metadata import embed_onnx_metadata

    return embed_onnx_metadata(onnx.load_from_string(data), meta)   # serialized and sealed
