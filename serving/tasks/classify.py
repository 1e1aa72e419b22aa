"""Classification in serving: a classifier file's output -> probabilities -> labelled top-k.

    dequantize ((q - zero_point) * scale) when the output is uint8/int8
    -> softmax when contract.output == "logits" (models from create_model emit probabilities)
    -> top-k (label, probability) pairs, highest first.

`ClassifierHead` is what serving.runtime.Runner holds for a classifier (serving.tasks picks it
from the contract's task): it checks the file's output against the metadata and the labels.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.contract import DataContract
from serving.backends import Backend, TensorSpec, merge_spec
from serving.metadata import ArtifactError


@dataclass(frozen=True)
class Prediction:
    """One classified image."""
    file: str
    label: str
    score: float
    topk: list[tuple[str, float]] = field(default_factory=list)
    latency_ms: float = 0.0   # decode + preprocess + model + postprocess for this image

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "label": self.label, "score": self.score,
                "topk": [[label, p] for label, p in self.topk], "latency_ms": self.latency_ms}


class ClassifierHead:
    """A classifier file's one output (N, K), checked against its metadata and labels."""
    task = "classification"

    def __init__(self, where: str, contract: DataContract, metadata: dict[str, Any],
                 backend: Backend) -> None:
        if len(backend.outputs or (backend.output,)) == 4:
            raise ArtifactError(f"{where}: the model has four outputs (a detector?) but its metadata "
                                f"is a {contract.task} model's; re-export it with "
                                "`python -m pipeline export`")
        self.contract = contract
        self.output = merge_spec(backend.output, metadata["output"], "output", where)
        if self.output.shape[-1] not in (None, contract.num_classes):
            raise ArtifactError(f"{where}: model output {list(self.output.shape)} does not match the "
                                f"contract's {contract.num_classes} labels")

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        return to_probabilities(raw, self.contract, self.output)


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
