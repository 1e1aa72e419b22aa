"""DenseNet (Huang et al., 2016); d2l section 8.7.

Dense block: each layer sees the concatenation of all earlier outputs and adds `growth`
channels: BN -> ReLU -> [1x1 conv to bn_size*growth -> BN -> ReLU] -> 3x3 conv (growth).
Transition: BN -> ReLU -> 1x1 conv (channels * compression) -> 2x2 avg pool (halves H, W).
densenet121 follows torchvision (blocks 6-12-24-16, growth 32, bottleneck 4, 7,978,856
parameters at 224x224x3 / 1000 classes); densenet_small is the course's model (4 blocks of
4 convs, growth 32, no bottleneck).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.layers import act, bn, conv, max_pool, padded_conv_bn_act, scaled
from models.options import OptionError
from models.registry import Family, register_model


@dataclass(frozen=True, kw_only=True)
class DenseNet(Family):
    blocks: tuple[int, ...] = (6, 12, 24, 16)
    growth: int = 32
    bn_size: int = 4          # bottleneck width factor; 0 = no 1x1 bottleneck (the course's)
    stem_channels: int = 64
    compression: float = 0.5

    family = "densenet"
    paper = "Huang, Liu, van der Maaten & Weinberger 2016, Densely connected CNNs; d2l 8.7"

    def validate(self) -> None:
        super().validate()
        if not self.blocks or min(self.blocks) < 1:
            raise OptionError(f"blocks must be positive layer counts, got {self.blocks}")
        if not 0 < self.compression <= 1:
            raise OptionError(f"compression must be in (0, 1], got {self.compression}")

    def dense_layer(self, k: Any, x: Any, name: str) -> Any:
        growth = scaled(self.growth, self.width)
        y = act(k, bn(k, x, f"{name}_bn1"), "relu", f"{name}_relu1")
        if self.bn_size:
            y = conv(k, y, self.bn_size * growth, 1, f"{name}_conv1", bias=False)
            y = act(k, bn(k, y, f"{name}_bn2"), "relu", f"{name}_relu2")
        y = conv(k, y, growth, 3, f"{name}_conv2", bias=False)
        return k.layers.Concatenate(name=f"{name}_concat")([x, y])  # C -> C + growth

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        x = padded_conv_bn_act(k, x, scaled(self.stem_channels, self.width), 7, "stem", stride=2)
        x = max_pool(k, x, "stem_pool", symmetric=True)                          # H/4
        feats = {}
        for b, n in enumerate(self.blocks, 1):
            for i in range(1, n + 1):
                x = self.dense_layer(k, x, f"block{b}_layer{i}")
            if b < len(self.blocks):
                feats[f"stride{2 ** (b + 1)}"] = x
                name = f"transition{b}"
                x = act(k, bn(k, x, f"{name}_bn"), "relu", f"{name}_relu")
                x = conv(k, x, int(x.shape[-1] * self.compression), 1, f"{name}_conv", bias=False)
                x = k.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)  # halves H
        x = act(k, bn(k, x, "final_bn"), "relu", "final_relu")
        feats[f"stride{2 ** (len(self.blocks) + 1)}"] = x
        return feats


@register_model
def densenet121() -> DenseNet:
    return DenseNet()


@register_model
def densenet_small() -> DenseNet:
    return DenseNet(blocks=(4, 4, 4, 4), growth=32, bn_size=0)
