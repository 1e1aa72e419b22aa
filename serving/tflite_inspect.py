"""What is inside a .tflite file: its operators, tensor dtypes and input/output records.

LiteRT's own flatbuffer schema and interpreter (ai_edge_litert), no TensorFlow: the export's file
checks, the tests and a device can all look inside a file the same way.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter


def op_names(data: bytes) -> list[str]:
    """Builtin operator names of a .tflite (CUSTOM and FLEX_* marked as such)."""
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


def tensor_record(detail: dict[str, Any]) -> dict[str, Any]:
    """Interpreter tensor detail -> the artifact metadata's input/output block."""
    scale, zero_point = detail["quantization"]
    quantized = np.dtype(detail["dtype"]).kind in "iu" and scale != 0
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(v) for v in detail["shape"]],
            "scale": float(scale) if quantized else None,
            "zero_point": int(zero_point) if quantized else None}


def describe_io(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    interp = Interpreter(model_content=data)
    return tensor_record(interp.get_input_details()[0]), tensor_record(interp.get_output_details()[0])


def describe_outputs(data: bytes) -> list[dict[str, Any]]:
    """Every output tensor's metadata record (a detector has four), in the file's output order,
    each with "key": its output name in the file's signature (the export graph's name, which
    the converter does not keep as the tensor name), None without a single signature."""
    interp = Interpreter(model_content=data)
    keys: dict[int, str] = {}
    sigs = interp.get_signature_list()
    if len(sigs) == 1:
        runner = interp.get_signature_runner(next(iter(sigs)))
        keys = {d["index"]: key for key, d in runner.get_output_details().items()}
    return [{**tensor_record(d), "key": keys.get(d["index"])} for d in interp.get_output_details()]


def tensor_types(data: bytes) -> dict[str, int]:
    """Count of tensors per dtype name in the converted graph (e.g. {"int8": 120, "float32": 2})."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    counts: dict[str, int] = {}
    for sub in model.subgraphs:
        for t in sub.tensors:
            key = names.get(t.type, str(t.type))
            counts[key] = counts.get(key, 0) + 1
    return counts
