"""LeNet-5 (LeCun et al., 1998) as in d2l section 7.6, and its BatchNorm version (d2l 8.5.4).

lenet:    conv(6, 5x5, pad 2) -> sigmoid -> avgpool 2 -> conv(16, 5x5) -> sigmoid -> avgpool 2
          -> dense 120 -> dense 84 -> classes               (28x28: 28 -> 14 -> 10 -> 5, 400 features)
lenet_bn: the same with BatchNorm after every conv/dense, first conv unpadded
          (28 -> 24 -> 12 -> 8 -> 4, 256 features); conv/dense before BN have no bias (torchvision habit).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.layers import act, bn, conv, mlp_head, scaled
from models.registry import Family, last, register_model


@dataclass(frozen=True, kw_only=True)
class LeNet(Family):
    batch_norm: bool = False
    activation: str = "sigmoid"   # the course's choice; "relu" trains faster
    filters: tuple[int, int] = (6, 16)
    hidden: tuple[int, int] = (120, 84)

    family = "lenet"
    paper = "LeCun et al. 1998, Gradient-based learning applied to document recognition; d2l 7.6/8.5"
    min_size = 16

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        feats = {}
        for i, (f, stride) in enumerate(zip(self.filters, (2, 4)), 1):
            pad = "same" if (i == 1 and not self.batch_norm) else "valid"
            x = conv(k, x, scaled(f, self.width), 5, f"conv{i}_conv", padding=pad,
                     bias=not self.batch_norm)
            if self.batch_norm:
                x = bn(k, x, f"conv{i}_bn")
            x = act(k, x, self.activation, f"conv{i}_{self.activation}")
            x = k.layers.AveragePooling2D(2, strides=2, name=f"conv{i}_pool")(x)
            feats[f"stride{stride}"] = x  # (H/2, W/2, 6) then ((H/2-4)/2, ..., 16)
        return feats

    def head(self, k: Any, features: dict[str, Any], num_classes: int) -> Any:
        hidden = tuple(scaled(h, self.width) for h in self.hidden)
        return mlp_head(k, last(features), num_classes, hidden, activation=self.activation,
                        dropout=self.dropout, batch_norm=self.batch_norm)


@register_model
def lenet() -> LeNet:
    return LeNet()


@register_model
def lenet_bn() -> LeNet:
    return LeNet(batch_norm=True)
