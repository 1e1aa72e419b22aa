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
from serving.metadata import embed_onnx_metadata


def convert(model: Any, spec: FormatSpec, options: dict[str, Any], *,
            calibration: np.ndarray | None, workdir: Path, graph: Path | None = None,
            task: Any = None) -> bytes:
    """The .onnx bytes (no metadata yet): float32 through tf2onnx (written once per opset in
    workdir), and for onnx_int8 that file statically quantized (quantize_int8). `task`
    (pipeline.tasks) gives the graph to convert and the file checks, as for TFLite."""
    import onnx

    opset = int(options["opset"])
    cached = Path(workdir) / f"float_opset{opset}.onnx"
    if not cached.is_file():
        tmp = Path(workdir) / f".{spec.name}.convert.onnx"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                export, signature = task.export_graph(model) if task is not None else (model, None)
                export.export(str(tmp), format="onnx", verbose=False, opset_version=opset,
                              **({"input_signature": signature} if signature else {}))
            proto = onnx.load(str(tmp))
        except Exception as e:  # tf2onnx raises a variety of types
            raise ExportError(f"{spec.name}: ONNX conversion failed: {first_line(e)}") from e
        finally:
            tmp.unlink(missing_ok=True)
        got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        if got != opset:
            raise ExportError(f"{spec.name}: asked for opset {opset}, tf2onnx wrote {got}")
        _check(proto, spec)
        problems = task.check_file("onnx", proto, spec, options) if task is not None else []
        if problems:
            raise ExportError(f"{spec.name}: {problems[0]}")
        onnx.save(proto, str(cached))
    if spec.name == "onnx_int8":
        return quantize_int8(cached, spec, calibration, workdir)
    return cached.read_bytes()


def _check(proto: Any, spec: FormatSpec) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{spec.name}: onnx.checker rejected the model: {first_line(e)}") from e


def quantize_int8(float_path: Path, spec: FormatSpec, calibration: np.ndarray | None,
                  workdir: Path, per_channel: bool = True) -> bytes:
    """ONNX Runtime static quantization: QDQ format, int8 per-channel weights, uint8 activations
    (int8 activations left most convs unfused in ONNX Runtime here), ranges calibrated on the
    training sample (MinMax). `quant_pre_process` first (shape inference and graph
    optimization; skip_symbolic_shape: its symbolic pass would need sympy)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration is None or not len(calibration):
        raise ExportError(f"{spec.name}: needs calibration images (calib=<data>)")
    pre, out = Path(workdir) / "int8_pre.onnx", Path(workdir) / "int8.onnx"
    try:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        except Exception as e:  # onnxruntime.quantization raises a variety of types
            raise ExportError(f"ONNX Runtime quantization failed: {first_line(e)}") from e
        quantize(pre, out, calibration, per_channel, [])
        data = out.read_bytes()
    except ExportError as e:
        raise ExportError(f"{spec.name}: {e}") from e
    finally:
        pre.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    return check_int8(data, spec)


def quantize(pre: Path, out: Path, calibration: np.ndarray, per_channel: bool,
             exclude: list[str]) -> None:
    """quantize_static of the pre-processed float file `pre` into `out` (the recipe above);
    `exclude`: node names kept float (int8 repair)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = onnx.load(str(pre)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.images = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            img = next(self.images, None)   # (H, W, C) uint8 -> (1, H, W, C) float 0..255
            return None if img is None else {name: img[None].astype(np.float32)}

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude) or None)
    except Exception as e:  # onnxruntime.quantization raises a variety of types
        raise ExportError(f"ONNX Runtime quantization failed: {first_line(e)}") from e


def check_int8(data: bytes, spec: FormatSpec) -> bytes:
    """A quantized file passes onnx.checker and holds QuantizeLinear nodes."""
    import onnx

    proto = onnx.load_from_string(data)
    _check(proto, spec)
    if not any(n.op_type == "QuantizeLinear" for n in proto.graph.node):
        raise ExportError(f"{spec.name}: the quantized graph has no QuantizeLinear node")
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


def embed(data: bytes, meta: dict[str, Any], standard: None = None) -> bytes:
    """Our JSON entry in metadata_props, sealed (ONNX has no standard metadata runtimes read)."""
    import onnx

    return embed_onnx_metadata(onnx.load_from_string(data), meta)   # serialized and sealed


def describe_outputs(data: bytes) -> list[dict[str, Any]]:
    """Every output's metadata record (a detector has four)."""
    import onnx

    return [_value_record(v) for v in onnx.load_from_string(data).graph.output]
