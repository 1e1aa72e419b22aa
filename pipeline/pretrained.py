"""ImageNet starting points: keras.applications weights mapped onto the registry's builders.

Families keras.applications offers: vgg16, vgg19, resnet50, densenet121, mobilenetv2. Their
convolutional ("notop") weights are copied layer by layer (explicit name maps), with exact
conversions where the layouts differ:
- resnet50 (keras: v1, conv biases before BN): built with stride_in_1x1=True, and the conv
  bias is folded into BN's moving mean (BN(conv + b) == BN'(conv) with mean' = mean - b);
- BatchNorm epsilon (keras 1.001e-5 or 1e-3, ours 1e-5): var' = var + eps_theirs - eps_ours;
- preprocessing becomes the model's own normalize layer: "caffe" (BGR, mean subtraction) is
  RGB mean with std 1 and the first conv's input channels reversed; "torch" is ImageNet
  mean/std; "tf" is x / 127.5 - 1.
After copying, one image is pushed through both networks and the features must agree, so a
bad mapping can never pass silently. Weights come from Keras' cache (~/.keras/models), a
download when the machine is online, or a local file given by path.
"""
from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.factory import create_model
from models.layers import BN_EPSILON
from models.options import OptionError


class PretrainedWeightsError(OptionError):
    """ImageNet weights that cannot be found, downloaded or used; one line for the user."""


def _resnet(name: str) -> str | None:
    if name.startswith("conv1_"):
        return name.replace("conv1_", "stem_")
    m = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", name)
    if not m:
        return None
    stage, block, idx, kind = m.groups()
    return f"stage{int(stage) - 1}_block{block}_{'proj' if idx == '0' else idx}_{kind}"


def _densenet(name: str) -> str | None:
    if name in ("conv1_conv", "conv1_bn"):
        return name.replace("conv1_", "stem_")
    if name == "bn":
        return "final_bn"
    m = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", name)
    if m:
        stage, layer, idx, kind = m.groups()
        ours = {("0", "bn"): "bn1", ("1", "conv"): "conv1", ("1", "bn"): "bn2", ("2", "conv"): "conv2"}
        return f"block{int(stage) - 1}_layer{layer}_{ours[idx, kind]}"
    m = re.fullmatch(r"pool(\d)_(conv|bn)", name)
    return f"transition{int(m.group(1)) - 1}_{m.group(2)}" if m else None


def _mobilenetv2(name: str) -> str | None:
    fixed = {"Conv1": "stem_conv", "bn_Conv1": "stem_bn", "Conv_1": "last_conv", "Conv_1_bn": "last_bn"}
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"(?:expanded_conv|block_(\d+))_(expand|depthwise|project)(_BN)?", name)
    if not m:
        return None
    block = int(m.group(1) or 0) + 1
    part = {"expand": "expand", "depthwise": "dw", "project": "project"}[m.group(2)]
    return f"block{block}_{part}_{'bn' if m.group(3) else 'conv'}"


@dataclass(frozen=True)
class Source:
    app: str                        # keras.applications constructor
    mode: str                       # its preprocessing: caffe | torch | tf
    rename: Callable[[str], str | None]
    features: tuple[str, str]       # (their, our) name of the last feature map, for the check
    bn_epsilon: float = BN_EPSILON
    overrides: dict = field(default_factory=dict)

    def weights_file(self, rows: int) -> str:
        if self.app == "MobileNetV2":
            size = rows if rows in (96, 128, 160, 192, 224) else 224
            return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"
        return f"{self.app.lower()}_weights_tf_dim_ordering_tf_kernels_notop.h5"


SOURCES = {
    "vgg16": Source("VGG16", "caffe", lambda n: n, ("block5_pool", "block5_pool")),
    "vgg19": Source("VGG19", "caffe", lambda n: n, ("block5_pool", "block5_pool")),
    "resnet50": Source("ResNet50", "caffe", _resnet, ("conv5_block3_out", "stage4_block3_out"),
                       1.001e-5, {"stride_in_1x1": True}),
    "densenet121": Source("DenseNet121", "torch", _densenet, ("relu", "final_relu"), 1.001e-5),
    "mobilenetv2": Source("MobileNetV2", "tf", _mobilenetv2, ("out_relu", "last_relu6"), 1e-3),
}
NORMALIZATION = {  # mode -> (RGB mean, std) in 0..255 pixel units
    "caffe": ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
    "torch": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    "tf": ((127.5,) * 3, (127.5,) * 3),
}


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_weights(name: str, weights: str, rows: int) -> str:
    """'imagenet' -> a cached or downloadable file; a path -> that file. Fails fast offline."""
    src = SOURCES[name]
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise PretrainedWeightsError(f"{weights}: weights file not found")
        return weights
    cached = keras_cache_dir() / src.weights_file(rows)
    if cached.is_file():
        return str(cached)
    if not _online():
        raise PretrainedWeightsError(
            f"ImageNet weights for {name} are not on this machine and it is offline: put "
            f"{src.weights_file(rows)} in {cached.parent}/ or pass weights=/path/to/file.h5")
    return "imagenet"  # keras.applications downloads into the cache


def _application(name: str, weights: str, input_shape: Sequence[int]) -> Any:
    import keras

    src = SOURCES[name]
    ctor = getattr(keras.applications, src.app)
    try:
        return ctor(include_top=False, weights=weights, input_shape=tuple(input_shape))
    except Exception as e:  # wrong file, truncated file, HTTP errors
        raise PretrainedWeightsError(f"{weights}: cannot load {src.app} ImageNet weights "
                                     f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def _copy_weights(app: Any, ours: Any, src: Source) -> None:
    for layer in app.layers:
        if not layer.weights:
            continue
        target_name = src.rename(layer.name)
        if target_name is None:
            raise PretrainedWeightsError(f"no mapping for {src.app} layer {layer.name}")
        target = ours.get_layer(target_name)
        w = [np.asarray(v) for v in layer.get_weights()]
        kind = type(layer).__name__
        if kind == "BatchNormalization":  # gamma, beta, mean, var
            w[3] = w[3] + src.bn_epsilon - BN_EPSILON
        elif kind == "Conv2D" and len(w) == 2 and len(target.weights) == 1:
            bn = ours.get_layer(target_name[: -len("conv")] + "bn")  # fold bias into BN mean
            bn_w = bn.get_weights()
            bn_w[2] = bn_w[2] - w[1]
            bn.set_weights(bn_w)
            w = w[:1]
        if target_name in ("stem_conv", "block1_conv1") and src.mode == "caffe":
            w[0] = w[0][:, :, ::-1, :]  # their first conv sees BGR; ours sees RGB
        target.set_weights(w)


def create_pretrained(name: str, *, weights: str = "imagenet", num_classes: int,
                      input_shape: Sequence[int], labels: Sequence[str] | None = None,
                      check: bool = True, **overrides: Any) -> Any:
    """Registry model `name` whose backbone carries ImageNet weights; the head is new."""
    if name not in SOURCES:
        raise PretrainedWeightsError(f"no ImageNet weights for {name}; available for: "
                                     f"{', '.join(SOURCES)}")
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise PretrainedWeightsError(f"ImageNet weights need 3-channel input, got input_shape "
                                     f"{tuple(input_shape)} (grayscale images load as RGB with channels=3)")
    if overrides.get("width", 1.0) != 1.0:
        raise PretrainedWeightsError("ImageNet weights exist only for width=1.0")
    src = SOURCES[name]
    app = _application(name, resolve_weights(name, weights, int(input_shape[0])), input_shape)
    mean, std = NORMALIZATION[src.mode]
    model = create_model(name, num_classes=num_classes, input_shape=input_shape, labels=labels,
                         mean=mean, std=std, **{**overrides, **src.overrides})
    _copy_weights(app, model, src)
    if check:
        check_features(app, model, src)
    return model


def check_features(app: Any, model: Any, src: Source, tol: float = 1e-3) -> float:
    """Same image through both: the last feature maps must agree (relative max error)."""
    import keras

    shape = tuple(model.input.shape[1:])
    x = np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype("float32")
    module = {"caffe": keras.applications.vgg16, "torch": keras.applications.densenet,
              "tf": keras.applications.mobilenet_v2}[src.mode]
    theirs = np.asarray(keras.Model(app.input, app.get_layer(src.features[0]).output)(
        module.preprocess_input(x.copy())))
    ours = np.asarray(keras.Model(model.input, model.get_layer(src.features[1]).output)(x))
    err = float(np.abs(theirs - ours).max() / (np.abs(theirs).max() + 1e-12))
    if not err < tol:
        raise PretrainedWeightsError(f"{src.app} weights did not map onto {model.name}: "
                                     f"features differ by {err:.2e} (relative)")
    return err
