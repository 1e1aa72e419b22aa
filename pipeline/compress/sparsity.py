"""Zeros in weights, counted where they end up: a Keras model, a .tflite file, an .onnx file.

No TensorFlow here (the export parent and the tests read files with LiteRT's flatbuffer schema
and onnx). "Weights" are the constant tensors with 2 or more dimensions (conv/dense kernels);
biases, scales and shapes are left out. For int8 tensors a zero weight is the integer 0
(weights are quantized symmetrically, zero point 0).
"""
from __future__ import annotations

from typing import Any

import numpy as np

KERNEL_ATTRS = ("kernel", "depthwise_kernel")


def _summary(per_tensor: dict[str, tuple[int, int]]) -> dict[str, Any]:
    zeros = sum(z for z, _ in per_tensor.values())
    total = sum(n for _, n in per_tensor.values())
    return {"overall": zeros / total if total else 0.0, "weights": int(total),
            "layers": {k: z / n for k, (z, n) in per_tensor.items() if n}}


def model_sparsity(model: Any) -> dict[str, Any]:
    """Fraction of exact zeros per kernel of a Keras model (Keras 3 or tf_keras)."""
    counts = {}
    for layer in model.layers:
        for attr in KERNEL_ATTRS:
            w = getattr(layer, attr, None)
            if w is not None:
                v = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
                counts[layer.name] = (int(np.count_nonzero(v == 0)), int(v.size))
    return _summary(counts)


def tflite_sparsity(data: bytes, min_size: int = 16) -> dict[str, Any]:
    """Zeros in the constant weight tensors of a .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    types = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT8: np.int8,
             schema.TensorType.FLOAT16: np.float16}
    counts = {}
    for sub in model.subgraphs:
        for t in sub.tensors:
            buf = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
            if buf is None or t.type not in types or t.shape is None or len(t.shape) < 2:
                continue
            v = np.frombuffer(bytes(bytearray(buf)), dtype=types[t.type])
            dense = int(np.prod(t.shape))   # a sparse-encoded tensor (tflite_sparse) stores
            stored_zeros = int(np.count_nonzero(v == 0))   # only its blocks with non-zeros
            zeros = stored_zeros + (dense - v.size if t.sparsity is not None else 0)
            if dense >= min_size:
                name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
                counts[name] = (zeros, dense if t.sparsity is not None else int(v.size))
    return _summary(counts)


def onnx_sparsity(data: bytes, min_size: int = 16) -> dict[str, Any]:
    """Zeros in the initializers (2+ dims) of an ONNX model."""
    import onnx
    from onnx import numpy_helper

    counts = {}
    for init in onnx.load_from_string(data).graph.initializer:
        v = numpy_helper.to_array(init)
        if v.ndim >= 2 and v.size >= min_size and v.dtype.kind in "fi":
            counts[init.name] = (int(np.count_nonzero(v == 0)), int(v.size))
    return _summary(counts)


def file_sparsity(path: Any) -> dict[str, Any]:
    from pathlib import Path

    path = Path(path)
    data = path.read_bytes()
    return onnx_sparsity(data) if path.suffix == ".onnx" else tflite_sparsity(data)
