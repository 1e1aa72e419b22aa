"""Keras builders for the classic CNN families (LeNet ... DenseNet) and mobile ones.

    from models import create_model, list_models
    model = create_model("resnet18", num_classes=10, input_shape=(64, 64, 3))

Attributes are imported lazily: `models.contract` and `models.atomic` have no heavy imports,
so serving code can use them on a device without TensorFlow.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_model": "models.factory", "create_backbone": "models.factory",
    "list_models": "models.factory", "build_twin": "models.factory",
    "get_contract": "models.factory", "set_contract": "models.factory",
    "resolve_config": "models.factory",
    "create_detector": "models.detector", "anchors_of": "models.detector",
    "register_model": "models.registry", "Family": "models.registry",
    "UnknownModelError": "models.registry",
    "save_model": "models.io", "load_model": "models.io", "read_contract": "models.io",
    "ModelFileError": "models.io",
    "DataContract": "models.contract", "ContractError": "models.contract",
    "OptionError": "models.options",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
