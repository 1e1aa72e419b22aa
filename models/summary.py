"""Parameters, multiply-accumulates and per-stage output shapes: the course's shape tables.

MACs count Conv2D, DepthwiseConv2D and Dense (pooling, BN and activations are ignored, as
usual); FLOPs = 2 x MACs. A "stage" is the first part of a layer name (stem, stage2, block3,
head, ...), so the table follows the names every builder gives its layers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def layer_macs(layer: Any) -> int:
    kind = type(layer).__name__
    out = layer.output.shape
    if kind == "Conv2D":
        kh, kw = layer.kernel_size
        cin = layer.input.shape[-1] // getattr(layer, "groups", 1)
        return out[1] * out[2] * out[3] * kh * kw * cin
    if kind == "DepthwiseConv2D":
        kh, kw = layer.kernel_size
        return out[1] * out[2] * out[3] * kh * kw
    if kind == "Dense":
        positions = math.prod(d for d in out[1:-1]) if len(out) > 2 else 1
        return positions * layer.input.shape[-1] * out[-1]
    return 0


def count_params(weights: list[Any]) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


@dataclass
class Stage:
    name: str
    output_shape: tuple
    params: int = 0
    macs: int = 0


def stage_table(model: Any) -> list[Stage]:
    stages: dict[str, Stage] = {}
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        name = layer.name.split("_")[0]
        st = stages.setdefault(name, Stage(name, ()))
        st.output_shape = tuple(layer.output.shape[1:])
        st.params += count_params(layer.trainable_weights)
        st.macs += layer_macs(layer)
    return list(stages.values())


def summary_text(model: Any) -> str:
    rows = stage_table(model)
    trainable = count_params(model.trainable_weights)
    total = count_params(model.weights)
    macs = sum(r.macs for r in rows)
    lines = [f"model {model.name}: input {tuple(model.input.shape[1:])}",
             f"{'stage':<14}{'output shape':<22}{'params':>14}{'MFLOPs':>12}"]
    for r in rows:
        shape = "x".join(str(d) for d in r.output_shape)
        lines.append(f"{r.name:<14}{shape:<22}{r.params:>14,}{2 * r.macs / 1e6:>12.1f}")
    lines += [f"trainable parameters: {trainable:,}",
              f"total parameters:     {total:,} (incl. BatchNorm moving statistics)",
              f"MACs: {macs / 1e6:,.1f} M   FLOPs: {2 * macs / 1e9:,.3f} G (per image)"]
    return "\n".join(lines)
