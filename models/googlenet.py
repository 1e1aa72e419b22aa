"""GoogLeNet / Inception v1 (Szegedy et al., 2014) as in d2l section 8.4: nine Inception blocks.

Inception block: four parallel paths concatenated on channels
  1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1.
Stages (224 input): b1 conv 7x7/2 + pool: 56 | b2 1x1, 3x3 + pool: 28 | b3 2 blocks + pool: 14
| b4 5 blocks + pool: 7 | b5 2 blocks (1024 channels) -> GAP -> dropout 0.4 -> classes.
As in d2l, convs have biases and no BatchNorm (batch_norm=True adds it, torchvision style);
no auxiliary classifiers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.layers import conv, conv_bn_act, max_pool, scaled
from models.registry import Family, register_model

# (1x1, (3x3 reduce, 3x3), (5x5 reduce, 5x5), pool proj) for each of the nine blocks
B3 = ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64))
B4 = ((192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64),
      (128, (128, 256), (24, 64), 64), (112, (144, 288), (32, 64), 64),
      (256, (160, 320), (32, 128), 128))
B5 = ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128))


@dataclass(frozen=True, kw_only=True)
class GoogLeNet(Family):
    dropout: float = 0.4
    batch_norm: bool = False

    family = "googlenet"
    paper = "Szegedy et al. 2014, Going deeper with convolutions; d2l 8.4"

    def _conv(self, k: Any, x: Any, filters: int, kernel: int, name: str, stride: int = 1) -> Any:
        f = scaled(filters, self.width)
        if self.batch_norm:
            return conv_bn_act(k, x, f, kernel, name, stride=stride)
        return conv(k, x, f, kernel, name, stride=stride, activation="relu")

    def inception(self, k: Any, x: Any, spec: tuple, name: str) -> Any:
        c1, (c2r, c2), (c3r, c3), c4 = spec
        p1 = self._conv(k, x, c1, 1, f"{name}_1x1")
        p2 = self._conv(k, self._conv(k, x, c2r, 1, f"{name}_3x3r"), c2, 3, f"{name}_3x3")
        p3 = self._conv(k, self._conv(k, x, c3r, 1, f"{name}_5x5r"), c3, 5, f"{name}_5x5")
        p4 = k.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
        p4 = self._conv(k, p4, c4, 1, f"{name}_poolproj")
        return k.layers.Concatenate(name=f"{name}_concat")([p1, p2, p3, p4])

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        x = self._conv(k, x, 64, 7, "b1_conv", stride=2)                         # H/2
        x = max_pool(k, x, "b1_pool")                                             # H/4
        x = self._conv(k, x, 64, 1, "b2_conv1")
        x = self._conv(k, x, 192, 3, "b2_conv2")
        feats = {"stride4": x}
        # each stage starts with the previous stage's 3x3/2 max pool: H/4 -> 8 -> 16 -> 32
        for pool, stage, specs, stride in (("b2_pool", "b3", B3, 8), ("b3_pool", "b4", B4, 16),
                                           ("b4_pool", "b5", B5, 32)):
            x = max_pool(k, x, pool)
            for i, spec in enumerate(specs, 1):
                x = self.inception(k, x, spec, f"{stage}_inception{i}")
            feats[f"stride{stride}"] = x                                          # 480/832/1024 ch
        return feats


@register_model
def googlenet() -> GoogLeNet:
    return GoogLeNet()
