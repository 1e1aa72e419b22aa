"""Building blocks shared by the families. Every function takes the Keras module `k`
(keras or tf_keras) and a name prefix, and names every layer it creates."""
from __future__ import annotations

from typing import Any

BN_MOMENTUM = 0.9   # torchvision's momentum=0.1 in Keras' convention
BN_EPSILON = 1e-5   # torchvision's default


def scaled(channels: float, width: float, divisor: int = 1) -> int:
    """Channels times the width multiplier, rounded to a multiple of divisor (>= divisor).

    divisor=8 is torchvision's _make_divisible (never rounds down by more than 10%).
    """
    v = channels * width
    if divisor == 1:
        return max(1, int(round(v)))
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv(k: Any, x: Any, filters: int, kernel: int, name: str, *, stride: int = 1,
         padding: str = "same", bias: bool = True, activation: str | None = None) -> Any:
    return k.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=bias,
                           activation=activation, kernel_initializer="he_normal",
                           name=name)(x)


def bn(k: Any, x: Any, name: str, *, zero_gamma: bool = False) -> Any:
    """BatchNorm; zero_gamma starts it at 0 (a residual branch that begins as identity)."""
    return k.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                       gamma_initializer="zeros" if zero_gamma else "ones",
                                       name=name)(x)


def act(k: Any, x: Any, kind: str, name: str) -> Any:
    """relu, relu6, sigmoid, hard_sigmoid, hard_swish, ... as standard layers only."""
    if kind == "relu6":
        return k.layers.ReLU(max_value=6.0, name=name)(x)
    if kind == "hard_sigmoid":  # relu6(x + 3) / 6
        return k.layers.Rescaling(1.0 / 6.0, name=name)(_relu6_shifted(k, x, name))
    if kind == "hard_swish":  # (x / 6) * relu6(x + 3)
        third = k.layers.Rescaling(1.0 / 6.0, name=f"{name}_scale")(x)
        return k.layers.Multiply(name=name)([third, _relu6_shifted(k, x, name)])
    return k.layers.Activation(kind, name=name)(x)


def _relu6_shifted(k: Any, x: Any, name: str) -> Any:
    """relu6(x + 3). Written this way (not clip(x/6 + 0.5, 0, 1), not Keras' hard_sigmoid) the
    TFLite converter fuses the clamp into ADD as RELU6 and XNNPACK delegates the int8 graph
    whole; the other forms leave RELU+MINIMUM or HARD_SWISH ops outside it (measured by
    bench/int8_investigation.py: MobileNetV3-Small int8 4.92 -> 2.93 ms at 224 px)."""
    y = k.layers.Rescaling(1.0, offset=3.0, name=f"{name}_shift")(x)
    return k.layers.ReLU(max_value=6.0, name=f"{name}_relu6")(y)


def conv_bn_act(k: Any, x: Any, filters: int, kernel: int, name: str, *, stride: int = 1,
                activation: str | None = "relu", padding: str = "same",
                zero_gamma: bool = False) -> Any:
    """Conv (no bias: BatchNorm's beta replaces it, as in torchvision) -> BN -> activation."""
    x = conv(k, x, filters, kernel, f"{name}_conv", stride=stride, padding=padding, bias=False)
    x = bn(k, x, f"{name}_bn", zero_gamma=zero_gamma)
    return act(k, x, activation, f"{name}_{activation}") if activation else x


def padded_conv_bn_act(k: Any, x: Any, filters: int, kernel: int, name: str, *, stride: int,
                       activation: str = "relu") -> Any:
    """Symmetric zero padding (kernel // 2) then a valid conv: torchvision's padding for
    strided stems, which Keras' "same" would place asymmetrically."""
    x = k.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return conv_bn_act(k, x, filters, kernel, name, stride=stride, activation=activation,
                       padding="valid")


def max_pool(k: Any, x: Any, name: str, *, pool: int = 3, stride: int = 2,
             symmetric: bool = False) -> Any:
    """Max pooling; symmetric=True pads (pool // 2) on all sides first, like torchvision."""
    if symmetric:
        x = k.layers.ZeroPadding2D(pool // 2, name=f"{name}_pad")(x)
        # after a ReLU the zero padding never wins the max, so it equals -inf padding
        return k.layers.MaxPooling2D(pool, strides=stride, padding="valid", name=name)(x)
    return k.layers.MaxPooling2D(pool, strides=stride, padding="same", name=name)(x)


def gap_head(k: Any, x: Any, num_classes: int, dropout: float, prefix: str = "head") -> Any:
    """Global average pool -> dropout -> linear classifier (logits)."""
    x = k.layers.GlobalAveragePooling2D(name=f"{prefix}_pool")(x)
    if dropout > 0:
        x = k.layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
    return k.layers.Dense(num_classes, name=f"{prefix}_fc")(x)


def mlp_head(k: Any, x: Any, num_classes: int, hidden: tuple[int, ...], *, activation: str,
             dropout: float, batch_norm: bool = False, prefix: str = "head") -> Any:
    """Flatten -> [Dense -> (BN) -> act -> (dropout)]* -> Dense: LeNet/AlexNet/VGG heads."""
    x = k.layers.Flatten(name=f"{prefix}_flatten")(x)
    for i, units in enumerate(hidden, 1):
        x = k.layers.Dense(units, use_bias=not batch_norm, name=f"{prefix}_fc{i}")(x)
        if batch_norm:
            x = bn(k, x, f"{prefix}_bn{i}")
        x = act(k, x, activation, f"{prefix}_{activation}{i}")
        if dropout > 0:
            x = k.layers.Dropout(dropout, name=f"{prefix}_dropout{i}")(x)
    return k.layers.Dense(num_classes, name=f"{prefix}_fc")(x)
