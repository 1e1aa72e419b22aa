"""Keras backend: the trained `.keras` file itself, loaded with models.load_model (safe mode).

The reference the exported formats are compared with. Imports Keras (and its backend), so it
is the slow-to-start path; float32 in (pixels 0..255, normalization inside the model), float32
probabilities out.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from models.io import ModelFileError, load_model
from serving.backends import Backend, TensorSpec
from serving.metadata import ArtifactError


class KerasBackend(Backend):
    name = "keras"

    def __init__(self, source: str | os.PathLike | bytes, *, threads: int | None = None) -> None:
        super().__init__()
        if isinstance(source, bytes):
            raise ArtifactError("<keras bytes>: a .keras model must be loaded from a file path")

        try:
            self._model = load_model(Path(source))
        except ModelFileError as e:
            raise ArtifactError(str(e)) from None
        self.threads = None   # Keras/TensorFlow choose their own thread pools
        if len(self._model.inputs) != 1 or len(self._model.outputs) != 1:
            raise ArtifactError(f"{source}: expected one input and one output tensor")
        inp, out = self._model.inputs[0], self._model.outputs[0]
        self.input = TensorSpec(name=inp.name, dtype="float32", shape=tuple(inp.shape))
        self.output = TensorSpec(name=out.name, dtype="float32", shape=tuple(out.shape))
        self.outputs = (self.output,)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict_on_batch(x), dtype=np.float32)
