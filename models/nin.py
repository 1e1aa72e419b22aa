"""Network in Network (Lin, Chen & Yan, 2013) as in d2l section 8.3.

A NiN block is a kxk conv followed by two 1x1 convs (per-pixel MLPs), all ReLU. No dense
layers: the last block outputs one channel per class and global average pooling gives logits.
224 -> block(96, 11x11/4): 56 -> pool: 28 -> block(256, 5x5): 28 -> pool: 14
-> block(384, 3x3): 14 -> pool: 7 -> dropout -> block(classes, 3x3): 7 -> GAP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.layers import conv, max_pool, scaled
from models.registry import Family, last, register_model


def nin_block(k: Any, x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
    x = conv(k, x, filters, kernel, f"{name}_conv", stride=stride, activation="relu")
    x = conv(k, x, filters, 1, f"{name}_mlp1", activation="relu")
    return conv(k, x, filters, 1, f"{name}_mlp2", activation="relu")


@dataclass(frozen=True, kw_only=True)
class NiN(Family):
    dropout: float = 0.5

    family = "nin"
    # the last NiN block maps to one channel per class: conv (3, 3, C, K), then two K x K 1x1s
    classifier = {"head_block_conv": ((3,), (0,)), "head_block_mlp1": ((2, 3), (0,)),
                  "head_block_mlp2": ((2, 3), (0,))}
    paper = "Lin, Chen & Yan 2013, Network In Network; d2l 8.3"

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        w = self.width
        x = nin_block(k, x, scaled(96, w), 11, 4, "block1")     # H/4
        feats = {"stride4": x}
        x = max_pool(k, x, "pool1")                              # H/8
        feats["stride8"] = x = nin_block(k, x, scaled(256, w), 5, 1, "block2")
        x = max_pool(k, x, "pool2")                              # H/16
        feats["stride16"] = x = nin_block(k, x, scaled(384, w), 3, 1, "block3")
        feats["stride32"] = max_pool(k, x, "pool3")              # H/32
        return feats

    def head(self, k: Any, features: dict[str, Any], num_classes: int) -> Any:
        x = last(features)
        if self.dropout > 0:
            x = k.layers.Dropout(self.dropout, name="head_dropout")(x)
        x = nin_block(k, x, num_classes, 3, 1, "head_block")    # (H/32, W/32, classes)
        return k.layers.GlobalAveragePooling2D(name="head_pool")(x)


@register_model
def nin() -> NiN:
    return NiN()
