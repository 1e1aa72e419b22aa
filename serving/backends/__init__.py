"""One Backend class per model file format, behind one small interface, chosen by suffix.

A backend only loads a file and runs one batch: it takes the input tensor already in the
model's own dtype (float32, or uint8/int8 after quantization) and returns the raw output
tensor. Decoding, normalization, (de)quantization, softmax and top-k are shared code in
serving.preprocess / serving.tasks.classify, so every format answers the same way.

The suffix map names modules, not classes, so loading a .tflite file never imports
onnxruntime, Keras or TensorFlow.
"""
from __future__ import annotations

import importlib
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from serving.metadata import ArtifactError, tensor_spec

# suffix -> (module, class)
BACKENDS: dict[str, tuple[str, str]] = {
    ".tflite": ("serving.backends.tflite", "TFLiteBackend"),
    ".onnx": ("serving.backends.onnx", "OnnxBackend"),
    ".keras": ("serving.backends.keras", "KerasBackend"),
}
# suffix -> (the library its backend runs on, the package extra that installs it)
RUNTIMES: dict[str, tuple[str, str]] = {
    ".tflite": ("ai_edge_litert", "edge"), ".onnx": ("onnxruntime", "edge"), ".keras": ("keras", "train"),
}


def require_runtime(path: str | os.PathLike, suffix: str | None = None) -> None:
    """ArtifactError naming the file and the missing library when this install cannot serve it
    (an edge install has no Keras; a bare `pip install .` has no runtime at all)."""
    import importlib.util

    suffix = (suffix or Path(path).suffix).lower()
    module, extra = RUNTIMES[suffix]
    if importlib.util.find_spec(module) is None:
        hint = ("; a device without TensorFlow serves the exported .tflite/.onnx files"
                if extra == "train" else "")
        raise ArtifactError(f"{path}: serving a {suffix} file needs {module}, which is not installed "
                            f"(pip install 'cnn-mobile-pipeline[{extra}]'){hint}")


@dataclass(frozen=True)
class TensorSpec:
    """What a model tensor is: name, numpy dtype name, shape (None = dynamic) and, for
    uint8/int8 tensors, the affine quantization real = (q - zero_point) * scale."""
    name: str
    dtype: str
    shape: tuple[int | None, ...]
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.dtype in ("uint8", "int8")

    def to_dict(self) -> dict[str, Any]:

        return tensor_spec(self.name, self.dtype, list(self.shape), self.scale, self.zero_point)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(name=str(d.get("name") or ""), dtype=str(d["dtype"]),
                   shape=tuple(None if v is None or v < 0 else int(v) for v in d["shape"]),
                   scale=d.get("scale"), zero_point=d.get("zero_point"))


class Backend(ABC):
    """Load a model (path or bytes) and run batches of its raw input tensor."""

    name: str = ""             # "tflite" | "onnx" | "keras"
    input: TensorSpec
    output: TensorSpec
    outputs: tuple[TensorSpec, ...] = ()   # every output (a detector file has four); [0] is output
    max_batch: int | None = None   # None: any batch in one call; 1: one image per call
    threads: int | None = None     # threads actually used (None: the library decides)

    def __init__(self) -> None:
        self.last_invoke_s = 0.0   # time inside the library's run call(s) of the last run()

    @abstractmethod
    def _invoke(self, x: np.ndarray) -> np.ndarray:
        """x: (n, H, W, C) in input.dtype with n <= max_batch -> raw output (n, K)."""

    def run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One batch the model takes in one call -> every output by tensor name (detectors).
        Records the library call's time in last_invoke_s."""
        t0 = time.perf_counter()
        outs = self._invoke_all(x)
        self.last_invoke_s = time.perf_counter() - t0
        return dict(zip((o.name for o in self.outputs), outs))

    def _invoke_all(self, x: np.ndarray) -> list[np.ndarray]:
        return [self._invoke(x)]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw input batch (N, H, W, C) -> raw output (N, K), split to max_batch as needed.
        Records the time spent in the library call(s) in last_invoke_s."""
        step = self.max_batch or len(x)
        outs, spent = [], 0.0
        for i in range(0, len(x), max(step, 1)):
            t0 = time.perf_counter()
            outs.append(self._invoke(x[i:i + step]))
            spent += time.perf_counter() - t0
        self.last_invoke_s = spent
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)


def backend_class(suffix: str) -> type[Backend]:
    suffix = suffix.lower()
    if suffix not in BACKENDS:
        raise ArtifactError(f"unsupported model file suffix {suffix or '(none)'!r} "
                            f"(supported: {', '.join(sorted(BACKENDS))})")
    module, cls = BACKENDS[suffix]
    return getattr(importlib.import_module(module), cls)


def backend_for(path: str | os.PathLike, suffix: str | None = None) -> type[Backend]:
    """The Backend class for `path` by its suffix; ArtifactError('<path>: ...') if unsupported."""
    try:
        cls = backend_class(suffix or Path(path).suffix)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    require_runtime(path, suffix)
    return cls


def open_backend(source: str | os.PathLike | bytes, *, suffix: str | None = None,
                 threads: int | None = None, kernels: str | None = None) -> Backend:
    """The backend for a file (by its suffix) or for in-memory bytes (suffix required).
    kernels: LiteRT's op resolver for a .tflite file (TFLiteBackend); None = its default."""
    extra = {} if kernels is None else {"kernels": kernels}
    if isinstance(source, (bytes, bytearray)):
        if suffix is None:
            raise ValueError("open_backend(bytes) needs suffix='.tflite' or '.onnx'")
        cls = backend_class(suffix)
        require_runtime("<model bytes>", suffix)
        _check_kernels(cls, kernels, "<model bytes>")
        return cls(bytes(source), threads=threads, **extra)
    path = Path(source)
    cls = backend_for(path, suffix)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")
    _check_kernels(cls, kernels, path)
    return cls(path, threads=threads, **extra)


def _check_kernels(cls: type[Backend], kernels: str | None, where: Any) -> None:
    if kernels is not None and cls.name != "tflite":
        raise ValueError(f"{where}: kernels={kernels!r} chooses LiteRT's kernels; {cls.name} files have none")


def merge_spec(actual: TensorSpec, claimed: dict[str, Any], side: str, where: str) -> TensorSpec:
    """The file's real tensor, with scale/zero_point from the metadata where the format has
    none (ONNX); a dtype or shape that disagrees with the metadata is an error."""
    meta = TensorSpec.from_dict(claimed)
    if actual.dtype != meta.dtype:
        raise ArtifactError(f"{where}: metadata says the {side} is {meta.dtype} but the model's "
                            f"tensor is {actual.dtype}")
    if actual.shape[1:] != meta.shape[1:] and None not in actual.shape[1:]:
        raise ArtifactError(f"{where}: metadata says the {side} shape is {list(meta.shape)} but "
                            f"the model's tensor is {list(actual.shape)}")
    if actual.quantized and actual.scale is None:
        return replace(actual, scale=meta.scale, zero_point=meta.zero_point)
    return actual
