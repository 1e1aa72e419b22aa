"""ONNX backend: onnxruntime's CPU InferenceSession. No TensorFlow import.

The batch dimension of Keras-exported ONNX models is usually dynamic, so a whole batch runs
in one call. ONNX tensors carry no quantization parameters at the graph boundary (QDQ models
keep float I/O), so a uint8/int8 input's scale comes from the artifact metadata.

Sessions are made with ONNX Runtime's `WeightBiasQuantization` optimizer off: at load it
quantizes (per-tensor int8) the float weights of any Conv/Gemm whose input comes from a
DequantizeLinear, which silently undoes a mixed-precision file's float layers
(model_int8_mixed.onnx: pipeline.export.repair); a fully quantized QDQ file has no float
weights or biases for it to touch, so nothing else changes.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from serving.backends import Backend, TensorSpec
from serving.metadata import ArtifactError, check_size, proto_fields

# ONNX Runtime graph optimizers a session leaves out (see the module docstring)
DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]

# onnxruntime's type strings -> numpy dtype names
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
             "tensor(uint8)": "uint8", "tensor(int8)": "int8",
             "tensor(int32)": "int32"}


# where TensorProtos sit in an ONNX model (onnx.proto field numbers), to find external data
_CHILDREN = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14   # TensorProto.external_data, .data_location


def has_external_data(data: bytes, kind: str = "model") -> bool:
    """Whether any tensor of the serialized message keeps its values in another file."""
    for f in proto_fields(data):
        if kind == "tensor" and (f.field_number == _TENSOR_EXTERNAL_DATA or (
                f.field_number == _TENSOR_DATA_LOCATION and f.wire_type == 0 and f.data == 1)):
            return True
        child = _CHILDREN[kind].get(f.field_number)
        if child and f.wire_type == 2 and has_external_data(f.data, child):
            return True
    return False


def _spec(arg: Any, where: str) -> TensorSpec:
    if arg.type not in ORT_TYPES:
        raise ArtifactError(f"{where}: tensor {arg.name!r} has type {arg.type}; supported: "
                            f"{', '.join(ORT_TYPES)}")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(name=arg.name, dtype=ORT_TYPES[arg.type], shape=shape)


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, source: str | os.PathLike | bytes, *, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        where = "<onnx bytes>" if isinstance(source, bytes) else str(source)
        opts = ort.SessionOptions()
        self.threads = 1 if threads is None else int(threads)
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if not isinstance(source, bytes):
            check_size(source)
            with open(source, "rb") as f:
                source = f.read()   # the bytes checked are the bytes run
        try:
            external = has_external_data(source)
        except Exception as e:  # protobuf's DecodeError on a damaged file
            raise ArtifactError(f"{where}: not a readable ONNX model ({type(e).__name__}: {e})") from None
        if external:   # ONNX Runtime would read them from beside the file, or from the cwd
            raise ArtifactError(f"{where}: ONNX external data (tensors kept in another file) is refused: "
                                "the seal and the manifest cover this file alone; export it as one file")
        try:
            self._session = ort.InferenceSession(source, sess_options=opts,
                                                 providers=["CPUExecutionProvider"],
                                                 disabled_optimizers=DISABLED_OPTIMIZERS)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ArtifactError(f"{where}: onnxruntime cannot load this model "
                                f"({type(e).__name__}: {e})") from None
        ins, outs = self._session.get_inputs(), self._session.get_outputs()
        if len(ins) != 1 or len(outs) not in (1, 4):
            raise ArtifactError(f"{where}: expected one input and one output tensor (four for a "
                                f"detector), got {len(ins)} and {len(outs)}")
        self.input, self.output = _spec(ins[0], where), _spec(outs[0], where)
        self.outputs = tuple(_spec(o, where) for o in outs)
        fixed = self.input.shape[0] if self.input.shape else None
        self.max_batch = fixed  # None (dynamic) or the fixed batch size

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        return self._session.run([self.output.name], {self.input.name: x})[0]

    def _invoke_all(self, x: np.ndarray) -> list[np.ndarray]:
        return self._session.run([o.name for o in self.outputs], {self.input.name: x})
