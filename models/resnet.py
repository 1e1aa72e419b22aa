"""ResNet (He et al., 2015) with basic and bottleneck residual blocks; d2l section 8.6.

Follows torchvision where d2l differs: no conv bias before BatchNorm, 1x1 projection
shortcuts only when shape changes, stride on the 3x3 conv of a bottleneck ("v1.5";
stride_in_1x1=True gives the original/keras.applications placement). Each block's last
BatchNorm starts at zero (Goyal et al. 2017, timm's zero_init_last): blocks begin as identity,
which keeps gradients tame in deep BN nets at initialisation. At 224x224x3 with 1000
classes: resnet18 11,689,512, resnet34 21,797,672, resnet50 25,557,032 parameters.
Stem: 7x7/2 conv + 3x3/2 max pool (224 -> 56); stages at strides 4, 8, 16, 32 (56 -> 7).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from models.layers import conv_bn_act, max_pool, padded_conv_bn_act, scaled
from models.options import OptionError
from models.registry import Family, register_model


def basic_block(k: Any, x: Any, filters: int, stride: int, name: str, *,
                zero_init: bool = True, **_: Any) -> Any:
    """3x3 -> 3x3, + shortcut; output has `filters` channels."""
    shortcut = x
    y = conv_bn_act(k, x, filters, 3, f"{name}_1", stride=stride)
    y = conv_bn_act(k, y, filters, 3, f"{name}_2", activation=None, zero_gamma=zero_init)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv_bn_act(k, x, filters, 1, f"{name}_proj", stride=stride, activation=None)
    y = k.layers.Add(name=f"{name}_add")([y, shortcut])
    return k.layers.Activation("relu", name=f"{name}_out")(y)


def bottleneck_block(k: Any, x: Any, filters: int, stride: int, name: str, *,
                     stride_in_1x1: bool = False, zero_init: bool = True) -> Any:
    """1x1 reduce -> 3x3 -> 1x1 expand (x4), + shortcut; output has 4*filters channels."""
    out = 4 * filters
    s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
    y = conv_bn_act(k, x, filters, 1, f"{name}_1", stride=s1)
    y = conv_bn_act(k, y, filters, 3, f"{name}_2", stride=s3)
    y = conv_bn_act(k, y, out, 1, f"{name}_3", activation=None, zero_gamma=zero_init)
    shortcut = x
    if stride != 1 or x.shape[-1] != out:
        shortcut = conv_bn_act(k, x, out, 1, f"{name}_proj", stride=stride, activation=None)
    y = k.layers.Add(name=f"{name}_add")([y, shortcut])
    return k.layers.Activation("relu", name=f"{name}_out")(y)


@dataclass(frozen=True, kw_only=True)
class ResNet(Family):
    block: Literal["basic", "bottleneck"] = "basic"
    layers: tuple[int, ...] = (2, 2, 2, 2)
    base_channels: int = 64
    stride_in_1x1: bool = False
    zero_init_residual: bool = True  # last BN of each block starts at gamma=0 (timm's default)

    family = "resnet"
    paper = "He, Zhang, Ren & Sun 2015, Deep residual learning for image recognition; d2l 8.6"

    def validate(self) -> None:
        super().validate()
        if not self.layers or min(self.layers) < 1:
            raise OptionError(f"layers must be positive block counts, got {self.layers}")

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        block = basic_block if self.block == "basic" else bottleneck_block
        x = padded_conv_bn_act(k, x, scaled(self.base_channels, self.width), 7, "stem", stride=2)
        x = max_pool(k, x, "stem_pool", symmetric=True)                          # H/4
        feats = {}
        for s, n in enumerate(self.layers):
            filters = scaled(self.base_channels * 2 ** s, self.width)
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1                           # H/4 * 2^s
                x = block(k, x, filters, stride, f"stage{s + 1}_block{b + 1}",
                          stride_in_1x1=self.stride_in_1x1, zero_init=self.zero_init_residual)
            feats[f"stride{4 * 2 ** s}"] = x
        return feats


@register_model
def resnet18() -> ResNet:
    return ResNet(block="basic", layers=(2, 2, 2, 2))


@register_model
def resnet34() -> ResNet:
    return ResNet(block="basic", layers=(3, 4, 6, 3))


@register_model
def resnet50() -> ResNet:
    return ResNet(block="bottleneck", layers=(3, 4, 6, 3))
