"""`create_model` / `create_backbone`: the only way to build a registered model.

    model = create_model("resnet18", num_classes=10, input_shape=(96, 96, 1), width=0.5)

Graph: image (H, W, C float, 0..255) -> normalize ((x - mean) / std, per channel)
-> family backbone -> family head (logits) -> softmax "probs" (float32 even under mixed
precision). The model's DataContract is attached (`get_contract(model)`) and saved with it.
Pass keras_module=tf_keras to build the Keras 2 twin (for tensorflow-model-optimization):
same layers, same names, same get_weights() order.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# importing the family modules registers their variants
from models import alexnet, densenet, googlenet, lenet, mobilenet, nin, resnet, vgg  # noqa: F401
from models.contract import DataContract, default_normalization
from models.options import OptionError, replace_checked
from models.registry import Family, family_config, registered_names

_CONTRACT_ATTR = "_data_contract"


def list_models() -> list[str]:
    return registered_names()


def resolve_config(name: str, overrides: dict[str, Any]) -> Family:
    """The variant's defaults with overrides applied, type-checked and validated."""
    cfg = replace_checked(family_config(name), overrides, f"option for {name}")
    cfg.validate()
    return cfg


def check_input(name: str, cfg: Family, input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise OptionError(f"input_shape must be (height, width, channels), got {tuple(input_shape)}")
    h, w, c = shape
    if min(h, w) < cfg.min_size or c < 1:
        raise OptionError(f"{name} needs inputs of at least {cfg.min_size}x{cfg.min_size} "
                          f"with >= 1 channel, got {h}x{w}x{c}")
    return shape  # type: ignore[return-value]


def keras_or_default(keras_module: Any) -> Any:
    if keras_module is None:
        import keras
        return keras
    return keras_module


def input_stem(k: Any, shape: tuple[int, int, int], mean: Sequence[float], std: Sequence[float]):
    inputs = k.Input(shape=shape, name="image")  # raw pixels, 0..255
    scale = [1.0 / s for s in std]
    offset = [-m / s for m, s in zip(mean, std)]
    return inputs, k.layers.Rescaling(scale, offset=offset, name="normalize")(inputs)


def labels_and_normalization(num_classes: int, labels: Sequence[str] | None,
                             mean: Sequence[float] | None, std: Sequence[float] | None,
                             channels: int) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    """Checked labels (default class_0..) and per-channel mean/std (default by channel count)."""
    if num_classes < 1:
        raise OptionError(f"num_classes must be >= 1, got {num_classes}")
    labels = tuple(labels) if labels is not None else tuple(f"class_{i}" for i in range(num_classes))
    if len(labels) != num_classes:
        raise OptionError(f"{len(labels)} labels given for num_classes={num_classes}")
    d_mean, d_std = default_normalization(channels)
    mean, std = tuple(mean or d_mean), tuple(std or d_std)
    if len(mean) != channels or len(std) != channels:
        raise OptionError(f"mean/std need {channels} values, got {len(mean)}/{len(std)}")
    return labels, mean, std


def create_model(name: str, *, num_classes: int, input_shape: Sequence[int],
                 labels: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, keras_module: Any = None,
                 **overrides: Any) -> Any:
    """Build registered model `name` as a classifier; returns a keras.Model with its contract."""
    cfg = resolve_config(name, overrides)
    shape = check_input(name, cfg, input_shape)
    labels, mean, std = labels_and_normalization(num_classes, labels, mean, std, shape[2])

    k = keras_or_default(keras_module)
    inputs, x = input_stem(k, shape, mean, std)
    logits = cfg.head(k, cfg.backbone(k, x), num_classes)
    probs = k.layers.Activation("softmax", dtype="float32", name="probs")(logits)
    model = k.Model(inputs, probs, name=name)

    contract = DataContract(
        input_shape=shape, labels=labels, mean=mean, std=std,
        architecture={"name": name, "num_classes": num_classes, "input_shape": list(shape),
                      "overrides": plain(overrides)})
    return set_contract(model, contract)


def create_backbone(name: str, *, input_shape: Sequence[int], mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None, keras_module: Any = None,
                    **overrides: Any) -> Any:
    """The family's feature extractor: a keras.Model whose outputs are a dict of named feature
    maps {"stride4": ..., "stride8": ..., "stride16": ..., "stride32": ...} (those that exist)."""
    cfg = resolve_config(name, overrides)
    shape = check_input(name, cfg, input_shape)
    d_mean, d_std = default_normalization(shape[2])
    k = keras_or_default(keras_module)
    inputs, x = input_stem(k, shape, tuple(mean or d_mean), tuple(std or d_std))
    return k.Model(inputs, cfg.backbone(k, x), name=f"{name}_backbone")


def build_twin(model: Any, keras_module: Any) -> Any:
    """Rebuild `model` from its contract with another Keras module and copy the weights."""
    contract = get_contract(model)
    arch = contract.architecture
    twin = create_model(arch["name"], num_classes=arch["num_classes"],
                        input_shape=arch["input_shape"], labels=contract.labels,
                        mean=contract.mean, std=contract.std, keras_module=keras_module,
                        **arch.get("overrides", {}))
    twin.set_weights(model.get_weights())
    return twin


def set_contract(model: Any, contract: DataContract) -> Any:
    object.__setattr__(model, _CONTRACT_ATTR, contract)  # plain attribute, not tracked by Keras
    return model


def get_contract(model: Any) -> DataContract:
    contract = getattr(model, _CONTRACT_ATTR, None)
    if contract is None:
        raise ValueError(f"model {getattr(model, 'name', model)!r} carries no data contract; "
                         "build it with models.create_model or load it with models.load_model")
    return contract


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so the architecture record is JSON/YAML friendly."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
