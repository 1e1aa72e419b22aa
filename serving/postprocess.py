"""Shared postprocessing: a model's raw output -> probabilities -> labelled top-k.

    dequantize ((q - zero_point) * scale) when the output is uint8/int8
    -> softmax when contract.output == "logits" (models from create_model emit probabilities)
    -> top-k (label, probability) pairs, highest first.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.contract import DataContract
from serving.backends import TensorSpec


def dequantize(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if not spec.quantized:
        return raw.astype(np.float32, copy=False)
    if not spec.scale:
        raise ValueError(f"output {spec.name!r} is {spec.dtype} but has no quantization scale")
    return ((raw.astype(np.float32) - np.float32(spec.zero_point or 0)) * np.float32(spec.scale))


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)   # (N, K); shift for numerical safety
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def to_probabilities(raw: np.ndarray, contract: DataContract, spec: TensorSpec) -> np.ndarray:
    """Raw output (N, K) -> float32 probabilities (N, K)."""
    x = dequantize(np.asarray(raw), spec).reshape(len(raw), -1)
    if x.shape[1] != contract.num_classes:
        raise ValueError(f"model output has {x.shape[1]} values per image but the contract "
                         f"has {contract.num_classes} labels")
    return softmax(x) if contract.output == "logits" else x


def topk(probs: np.ndarray, labels: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """One image's probabilities (K,) -> [(label, p), ...] for the k highest, best first."""
    k = max(1, min(int(k), len(labels)))
    order = np.argsort(-probs, kind="stable")[:k]
    return [(labels[i], float(probs[i])) for i in order]
