"""Run exported models (.tflite via LiteRT, .onnx via ONNX Runtime, .keras via Keras) with
the same pre- and post-processing everywhere.

    import serving
    runner = serving.load("export/model_fp32.tflite")
    runner.classify(["cat.jpg"], topk=3)

Attributes are imported lazily, so `import serving` stays light and a TFLite/ONNX runtime
never imports TensorFlow or Keras.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "load": "serving.runtime", "Runner": "serving.runtime", "Prediction": "serving.tasks.classify",
    "Detections": "serving.tasks.detect",
    "ArtifactError": "serving.metadata", "read_metadata": "serving.metadata",
    "METADATA_KEY": "serving.metadata", "SCHEMA": "serving.metadata",
    "read_manifest": "serving.manifest", "write_manifest": "serving.manifest",
    "verify_file": "serving.manifest",
    "ImageError": "serving.images", "load_image": "serving.images",
    "BACKENDS": "serving.backends", "TensorSpec": "serving.backends",
}
_SUBMODULES = ("backends", "benchmark", "images", "manifest", "metadata", "tasks",
               "preprocess", "runtime")
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:   # serving.benchmark.run(...) without importing it first
        return importlib.import_module(f"serving.{name}")
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
