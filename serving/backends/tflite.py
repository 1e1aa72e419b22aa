"""TFLite backend: ai_edge_litert's Interpreter (the LiteRT runtime an edge device ships).

No TensorFlow import. A model whose batch dimension is fixed (shape signature [1, H, W, C])
runs one image per invoke; a dynamic one ([-1, H, W, C]) is resized to the batch once per new
batch size. Threads default to 1: on a shared 2-core CPU two threads measured slower.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from serving.backends import Backend, TensorSpec
from serving.metadata import ArtifactError


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"]).name
    quantized = dtype in ("uint8", "int8") and scale
    shape = detail.get("shape_signature", detail["shape"])
    return TensorSpec(name=detail["name"], dtype=dtype,
                      shape=tuple(None if d < 0 else int(d) for d in shape),
                      scale=float(scale) if quantized else None,
                      zero_point=int(zero_point) if quantized else None)


KERNELS = ("xnnpack", "builtin", "reference")   # LiteRT's op resolvers, fastest first


class TFLiteBackend(Backend):
    name = "tflite"

    def __init__(self, source: str | os.PathLike | bytes, *, threads: int | None = None,
                 kernels: str = "xnnpack") -> None:
        """kernels: "xnnpack" (LiteRT's default: builtin ops with the XNNPACK delegate),
        "builtin" (LiteRT's own optimized kernels, no delegate) or "reference" (its reference
        kernels, slow). The same int8 file rounds a little differently on each; how often its
        top-1 changes between them is the model's own sensitivity to 1-step rounding."""
        super().__init__()
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from serving.native_logs import filtered

        self.threads = 1 if threads is None else int(threads)
        where = "<tflite bytes>" if isinstance(source, bytes) else str(source)
        if kernels not in KERNELS:
            raise ValueError(f"kernels={kernels!r}: expected one of {', '.join(KERNELS)}")
        resolver = {"xnnpack": OpResolverType.AUTO,
                    "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                    "reference": OpResolverType.BUILTIN_REF}[kernels]
        self.kernels = kernels
        try:
            with filtered():   # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" line
                if isinstance(source, bytes):
                    self._interp = Interpreter(model_content=source, num_threads=self.threads,
                                               experimental_op_resolver_type=resolver)
                else:
                    self._interp = Interpreter(model_path=str(Path(source)), num_threads=self.threads,
                                               experimental_op_resolver_type=resolver)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:  # unreadable: ValueError; unresolved op: RuntimeError
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ArtifactError(f"{where}: LiteRT cannot load this model ({first})") from None
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(ins) != 1 or len(outs) not in (1, 4):
            raise ArtifactError(f"{where}: expected one input and one output tensor (four for a "
                                f"detector), got {len(ins)} and {len(outs)}")
        self._in, self._out = ins[0]["index"], outs[0]["index"]
        self._outs = [o["index"] for o in outs]
        self.input, self.output = _spec(ins[0]), _spec(outs[0])
        self.outputs = tuple(_spec(o) for o in outs)
        self._batch = int(ins[0]["shape"][0])   # the batch the tensors are allocated for now
        self.max_batch = None if self.input.shape[0] is None else self._batch

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:   # only reachable with a dynamic batch dimension
            self._interp.resize_tensor_input(self._in, list(x.shape), strict=True)
            self._interp.allocate_tensors()
            self._batch = len(x)
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        return self._interp.get_tensor(self._out)

    def _invoke_all(self, x: np.ndarray) -> list[np.ndarray]:
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        return [self._interp.get_tensor(i) for i in self._outs]
