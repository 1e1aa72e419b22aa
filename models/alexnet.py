"""AlexNet (Krizhevsky et al., 2012) as in d2l section 8.1 (96-256-384-384-256 channels).

Pools and convs use "same" padding so the net scales down to 32x32 inputs:
224 -> conv 11x11/4: 56 -> pool: 28 -> conv 5x5: 28 -> pool: 14 -> 3 convs: 14 -> pool: 7
-> flatten 7*7*256 -> 4096 -> 4096 -> classes, dropout 0.5 between the dense layers.
(d2l pads differently and gets 5x5 at the end; the parameter count differs accordingly.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.layers import conv, max_pool, mlp_head, scaled
from models.registry import Family, last, register_model


@dataclass(frozen=True, kw_only=True)
class AlexNet(Family):
    dropout: float = 0.5
    fc_width: int = 4096

    family = "alexnet"
    paper = "Krizhevsky, Sutskever, Hinton 2012, ImageNet classification with deep CNNs; d2l 8.1"

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        w = self.width
        x = conv(k, x, scaled(96, w), 11, "conv1", stride=4, activation="relu")  # H/4
        feats = {"stride4": x}
        x = max_pool(k, x, "pool1")                                               # H/8
        x = conv(k, x, scaled(256, w), 5, "conv2", activation="relu")
        feats["stride8"] = x
        x = max_pool(k, x, "pool2")                                               # H/16
        for i, f in enumerate((384, 384, 256), 3):
            x = conv(k, x, scaled(f, w), 3, f"conv{i}", activation="relu")
        feats["stride16"] = x
        feats["stride32"] = max_pool(k, x, "pool5")                               # H/32
        return feats

    def head(self, k: Any, features: dict[str, Any], num_classes: int) -> Any:
        fc = scaled(self.fc_width, self.width)
        return mlp_head(k, last(features), num_classes, (fc, fc), activation="relu",
                        dropout=self.dropout)


@register_model
def alexnet() -> AlexNet:
    return AlexNet()
