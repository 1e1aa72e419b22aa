"""VGG (Simonyan & Zisserman, 2014) as in d2l section 8.2: blocks of 3x3 convs + 2x2 max pool.

`blocks` is the course's conv_arch: ((num_convs, channels), ...), one pool per block, so
five blocks give stride 32 (224 -> 7). Head: flatten -> 4096 -> 4096 -> classes with dropout
0.5, as torchvision (138,357,544 parameters for vgg16 at 224x224x3, 1000 classes).
Convs keep their bias (no BatchNorm) unless batch_norm=True (the later "vgg_bn" variant).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.layers import act, bn, conv, mlp_head, scaled
from models.options import OptionError
from models.registry import Family, last, register_model


@dataclass(frozen=True, kw_only=True)
class VGG(Family):
    blocks: tuple[tuple[int, int], ...] = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    fc_width: int = 4096
    dropout: float = 0.5
    batch_norm: bool = False

    family = "vgg"
    paper = "Simonyan & Zisserman 2014, Very deep convolutional networks; d2l 8.2"

    def validate(self) -> None:
        super().validate()
        if not self.blocks or any(n < 1 or c < 1 for n, c in self.blocks):
            raise OptionError(f"blocks must be ((num_convs, channels), ...), got {self.blocks}")

    @property
    def min_size(self) -> int:  # type: ignore[override]  # one 2x2 pool per block
        return 2 ** len(self.blocks)

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        feats = {}
        for b, (num_convs, channels) in enumerate(self.blocks, 1):
            for c in range(1, num_convs + 1):
                name = f"block{b}_conv{c}"
                x = conv(k, x, scaled(channels, self.width), 3, name, bias=not self.batch_norm)
                if self.batch_norm:
                    x = bn(k, x, f"{name}_bn")
                x = act(k, x, "relu", f"{name}_relu")
            x = k.layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)  # H/2^b
            feats[f"stride{2 ** b}"] = x
        return feats

    def head(self, k: Any, features: dict[str, Any], num_classes: int) -> Any:
        fc = scaled(self.fc_width, self.width)
        return mlp_head(k, last(features), num_classes, (fc, fc), activation="relu",
                        dropout=self.dropout)


def _vgg(convs_per_block: tuple[int, ...]) -> VGG:
    return VGG(blocks=tuple(zip(convs_per_block, (64, 128, 256, 512, 512))))


@register_model
def vgg11() -> VGG:
    return _vgg((1, 1, 2, 2, 2))


@register_model
def vgg13() -> VGG:
    return _vgg((2, 2, 2, 2, 2))


@register_model
def vgg16() -> VGG:
    return _vgg((2, 2, 3, 3, 3))


@register_model
def vgg19() -> VGG:
    return _vgg((2, 2, 4, 4, 4))
