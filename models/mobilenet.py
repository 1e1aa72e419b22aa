"""MobileNetV2 (Sandler et al., 2018) and MobileNetV3-Small (Howard et al., 2019).

Inverted residual: 1x1 expand (t x) -> 3x3 depthwise (stride s) -> 1x1 linear projection,
residual when stride 1 and channels unchanged. Channel counts are rounded to multiples of 8
(torchvision's _make_divisible). At 224x224x3 / 1000 classes: mobilenetv2 3,504,872 and
mobilenetv3_small 2,542,856 parameters, as torchvision. V3 adds squeeze-and-excitation and
hard-swish, built here from standard layers (Rescaling + ReLU(max_value=1) is hard-sigmoid).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.layers import act, bn, conv, conv_bn_act, scaled
from models.registry import Family, last, register_model

# MobileNetV2: (expansion t, channels c, repeats n, first stride s)
V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))
# MobileNetV3-Small: (kernel, expanded, out, squeeze-excite, activation, stride)
V3_SMALL = ((3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
            (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hard_swish", 2),
            (5, 240, 40, True, "hard_swish", 1), (5, 240, 40, True, "hard_swish", 1),
            (5, 120, 48, True, "hard_swish", 1), (5, 144, 48, True, "hard_swish", 1),
            (5, 288, 96, True, "hard_swish", 2), (5, 576, 96, True, "hard_swish", 1),
            (5, 576, 96, True, "hard_swish", 1))


def squeeze_excite(k: Any, x: Any, name: str) -> Any:
    """Channel gating: GAP -> 1x1 (C/4) -> ReLU -> 1x1 (C) -> hard-sigmoid -> x * gate."""
    channels = x.shape[-1]
    s = k.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)  # (1, 1, C)
    s = conv(k, s, scaled(channels // 4, 1.0, 8), 1, f"{name}_reduce", activation="relu")
    s = conv(k, s, channels, 1, f"{name}_expand")
    s = act(k, s, "hard_sigmoid", f"{name}_gate")
    return k.layers.Multiply(name=f"{name}_scale")([x, s])


def inverted_residual(k: Any, x: Any, *, expanded: int, out: int, kernel: int, stride: int,
                      activation: str, se: bool, name: str) -> Any:
    y = x
    if expanded != x.shape[-1]:
        y = conv_bn_act(k, y, expanded, 1, f"{name}_expand", activation=activation)
    y = k.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                 name=f"{name}_dw_conv")(y)
    y = act(k, bn(k, y, f"{name}_dw_bn"), activation, f"{name}_dw_{activation}")
    if se:
        y = squeeze_excite(k, y, f"{name}_se")
    y = conv_bn_act(k, y, out, 1, f"{name}_project", activation=None)
    if stride == 1 and x.shape[-1] == out:
        y = k.layers.Add(name=f"{name}_add")([x, y])
    return y


@dataclass(frozen=True, kw_only=True)
class MobileNetV2(Family):
    dropout: float = 0.2
    last_channels: int = 1280

    family = "mobilenet"
    paper = "Sandler et al. 2018, MobileNetV2: inverted residuals and linear bottlenecks"

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        x = conv_bn_act(k, x, scaled(32, self.width, 8), 3, "stem", stride=2,
                        activation="relu6")                                       # H/2
        feats, stride, idx = {}, 2, 0
        for t, c, n, s in V2_SETTINGS:
            if s == 2:
                feats[f"stride{stride}"] = x
                stride *= 2
            for i in range(n):
                idx += 1
                x = inverted_residual(k, x, expanded=x.shape[-1] * t, out=scaled(c, self.width, 8),
                                      kernel=3, stride=s if i == 0 else 1, activation="relu6",
                                      se=False, name=f"block{idx}")
        last_ch = scaled(self.last_channels, max(1.0, self.width), 8)
        feats[f"stride{stride}"] = conv_bn_act(k, x, last_ch, 1, "last", activation="relu6")
        return feats


@dataclass(frozen=True, kw_only=True)
class MobileNetV3Small(Family):
    dropout: float = 0.2
    head_channels: int = 1024

    family = "mobilenet"
    paper = "Howard et al. 2019, Searching for MobileNetV3"

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        x = conv_bn_act(k, x, scaled(16, self.width, 8), 3, "stem", stride=2,
                        activation="hard_swish")                                  # H/2
        feats, stride = {}, 2
        for i, (kernel, exp, out, se, activation, s) in enumerate(V3_SMALL, 1):
            if s == 2:
                feats[f"stride{stride}"] = x
                stride *= 2
            x = inverted_residual(k, x, expanded=scaled(exp, self.width, 8),
                                  out=scaled(out, self.width, 8), kernel=kernel, stride=s,
                                  activation=activation, se=se, name=f"block{i}")
        feats[f"stride{stride}"] = conv_bn_act(k, x, 6 * x.shape[-1], 1, "last",
                                               activation="hard_swish")          # 576 channels
        return feats

    def head(self, k: Any, features: dict[str, Any], num_classes: int) -> Any:
        x = k.layers.GlobalAveragePooling2D(name="head_pool")(last(features))
        x = k.layers.Dense(self.head_channels, name="head_fc1")(x)
        x = act(k, x, "hard_swish", "head_hswish")
        if self.dropout > 0:
            x = k.layers.Dropout(self.dropout, name="head_dropout")(x)
        return k.layers.Dense(num_classes, name="head_fc")(x)


@register_model
def mobilenetv2() -> MobileNetV2:
    return MobileNetV2()


@register_model
def mobilenetv3_small() -> MobileNetV3Small:
    return MobileNetV3Small()
