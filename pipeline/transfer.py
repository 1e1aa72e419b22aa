"""Transfer-learning surgery (d2l section 14.2, fine-tuning): swap the output layer for a new
label set, reuse the classifier rows of labels both sets share, freeze lower layers, and
give the backbone a smaller learning rate than the new head.

Lower layers learn general features (edges, textures), so they can be frozen or trained
slowly; the output layer is specific to the source labels and is replaced - except for the
labels source and target share, whose classifier rows are copied (matched by name).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.factory import create_model, get_contract
from models.options import OptionError, suggest
from models.registry import family_config

HEAD_PREFIXES = ("head", "probs")


@dataclass
class HeadSwap:
    model: Any
    shared: list[str]   # labels whose classifier rows were copied
    new: list[str]      # labels that start from a fresh initialisation


def copy_class_entries(w_new: np.ndarray, w_old: np.ndarray, axes: Sequence[int],
                       dst: np.ndarray, src: np.ndarray) -> None:
    """w_new[.., dst, ..] = w_old[.., src, ..] along every class axis (in place); other axes
    (e.g. the 512 input features of a (512, K) kernel) are copied whole."""
    idx_new = [np.arange(n) for n in w_new.shape]
    idx_old = [np.arange(n) for n in w_old.shape]
    for ax in axes:
        idx_new[ax], idx_old[ax] = dst, src
    w_new[np.ix_(*idx_new)] = w_old[np.ix_(*idx_old)]


def replace_head(model: Any, labels: Sequence[str], *, seed: int = 0) -> HeadSwap:
    """A copy of `model` with one output per label in `labels`.

    All non-classifier weights are copied; classifier weights start from a fresh
    initialisation, then the entries of labels present in both label sets are copied
    from the source (for each class axis the family declares).
    """
    import keras

    contract = get_contract(model)
    arch = contract.architecture
    labels = [str(v) for v in labels]
    if len(set(labels)) != len(labels):
        raise OptionError("target labels must be unique")
    keras.utils.set_random_seed(seed)
    new = create_model(arch["name"], num_classes=len(labels), input_shape=contract.input_shape,
                       labels=labels, mean=contract.mean, std=contract.std,
                       **arch.get("overrides", {}))
    classifier = family_config(arch["name"]).classifier
    old_index = {label: i for i, label in enumerate(contract.labels)}
    shared = [lab for lab in labels if lab in old_index]
    dst = np.array([labels.index(lab) for lab in shared], dtype=int)
    src = np.array([old_index[lab] for lab in shared], dtype=int)
    for layer in new.layers:
        old_weights = model.get_layer(layer.name).get_weights()
        if layer.name not in classifier:
            layer.set_weights(old_weights)
            continue
        weights = layer.get_weights()
        if shared:
            for w_new, w_old, axes in zip(weights, old_weights, classifier[layer.name]):
                copy_class_entries(w_new, w_old, axes, dst, src)
        layer.set_weights(weights)
    return HeadSwap(new, shared, [lab for lab in labels if lab not in old_index])


def backbone_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers
            if not layer.name.startswith(HEAD_PREFIXES) and type(layer).__name__ != "InputLayer"]


def stages(model: Any) -> list[str]:
    """Stage names (first part of layer names) of the backbone, input side first."""
    seen: list[str] = []
    for layer in backbone_layers(model):
        stage = layer.name.split("_")[0]
        if stage not in seen:
            seen.append(stage)
    return seen


def freeze(model: Any, spec: str | float | None) -> list[str]:
    """Freeze the lower part of the backbone; returns the frozen layer names.

    spec: None/"none" - nothing; a float in (0, 1] - that fraction of the backbone's
    weighted layers, from the input side; a stage name ("stage2", "block3", ...) - every
    backbone layer up to and including that stage. Frozen BatchNorm layers run in inference
    mode (Keras 3 does this for trainable=False), so their moving statistics stay unchanged.
    Recompile the model after freezing.
    """
    layers = backbone_layers(model)
    if spec is None or spec == "none" or spec == 0:
        cut = 0
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not 0 < spec <= 1:
            raise OptionError(f"freeze fraction must be in (0, 1], got {spec}")
        weighted = [i for i, layer in enumerate(layers) if layer.weights]
        n = int(round(spec * len(weighted)))
        cut = weighted[n - 1] + 1 if n else 0
    else:
        names = stages(model)
        if spec not in names:
            raise OptionError(f"freeze: no stage {spec!r} in {model.name}{suggest(str(spec), names)}; "
                              f"stages: {', '.join(names)}")
        cut = max(i for i, layer in enumerate(layers) if layer.name.split("_")[0] == spec) + 1
    for layer in model.layers:
        layer.trainable = True
    for layer in layers[:cut]:
        layer.trainable = False
    return [layer.name for layer in layers[:cut]]


def _scaled_update_step(self: Any, gradient: Any, variable: Any, learning_rate: Any) -> Any:
    scale = self._lr_multipliers.get(self._var_key(variable), 1.0)
    if scale != 1.0:
        learning_rate = learning_rate * scale
    return type(self).__mro__[1].update_step(self, gradient, variable, learning_rate)


def with_lr_multiplier(optimizer: Any, variables: Sequence[Any], multiplier: float) -> Any:
    """`optimizer`, changed so that `variables` move with learning_rate * multiplier.

    Keras 3 optimizers call update_step(gradient, variable, learning_rate) once per
    variable, so a subclass that scales learning_rate there is exact for every optimizer
    (SGD, momentum, Adam, ...), unlike scaling gradients, which Adam would undo. The instance
    switches to that subclass in place (before it is built), so its schedule object and its
    weight-decay exclusions, which get_config does not carry, stay as they are. Decoupled
    weight decay still uses the base learning rate. Keras 3 optimizers only.
    """
    base = type(optimizer)
    if not hasattr(base, "_var_key"):
        raise OptionError(f"a backbone learning-rate multiplier needs a Keras 3 optimizer, "
                          f"got {base.__module__}.{base.__name__}")
    optimizer.__class__ = type(f"{base.__name__}WithLRMultiplier", (base,),
                               {"update_step": _scaled_update_step})
    optimizer._lr_multipliers = {optimizer._var_key(v): float(multiplier) for v in variables}
    return optimizer
