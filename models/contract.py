"""The data contract a model carries: what goes in, what comes out, what the labels are.

Training, export, serving and the demo all read it from here, so an image is prepared the
same way everywhere. It travels inside `.keras` files (as `contract.json` in the zip), in
TFLite/ONNX metadata and in `manifest.json`. No heavy imports: serving uses it on devices.

Pixel convention: the model input is float RGB (or grayscale) in 0..255, HxWxC. With
normalization="in_model" (what `create_model` builds) the model's first layer computes
(x - mean) / std, so a runtime only decodes and resizes; "outside" means the runtime must do it.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.decoder import DetectionSettings

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # ImageNet RGB statistics in 0..255 units
IMAGENET_STD = (58.395, 57.12, 57.375)
GRAY_MEAN = (114.495,)  # 0.449 * 255: the mean of IMAGENET_MEAN, used for 1-channel inputs
GRAY_STD = (57.63,)     # 0.226 * 255

TASKS = ("classification", "detection")


class ContractError(ValueError):
    """A contract that is missing fields or contradicts itself."""


def default_normalization(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    if channels == 1:
        return GRAY_MEAN, GRAY_STD
    return (127.5,) * channels, (127.5,) * channels


@dataclass(frozen=True)
class DataContract:
    input_shape: tuple[int, int, int]          # (H, W, C)
    labels: tuple[str, ...]
    task: str = "classification"
    mean: tuple[float, ...] = IMAGENET_MEAN    # per channel, 0..255 units
    std: tuple[float, ...] = IMAGENET_STD
    normalization: str = "in_model"            # "in_model" | "outside"
    output: str = "probabilities"              # "probabilities" | "logits"
    resize: str = "bilinear"                   # Pillow resampling used to reach input_shape
    architecture: Mapping[str, Any] = field(default_factory=dict)  # create_model arguments
    extra: Mapping[str, Any] = field(default_factory=dict)         # task-specific (anchors, NMS)

    def __post_init__(self) -> None:
        h, w, c = self.input_shape
        if min(h, w, c) < 1:
            raise ContractError(f"input_shape must be positive (H, W, C), got {self.input_shape}")
        if self.task not in TASKS:
            raise ContractError(f"task must be one of {TASKS}, got {self.task!r}")
        if len(self.mean) != c or len(self.std) != c:
            raise ContractError(f"mean/std need {c} values (one per channel), "
                                f"got {len(self.mean)}/{len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ContractError(f"std must be positive, got {self.std}")
        if self.normalization not in ("in_model", "outside"):
            raise ContractError(f"normalization must be in_model|outside, got {self.normalization!r}")
        if self.output not in ("probabilities", "logits"):
            raise ContractError(f"output must be probabilities|logits, got {self.output!r}")
        if not self.labels:
            raise ContractError("labels must not be empty")

    @property
    def channels(self) -> int:
        return self.input_shape[2]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the model input."""
        return self.input_shape[0], self.input_shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def detection(self) -> DetectionSettings:
        """A detector's anchors, box encoding and NMS settings, typed (models.decoder)."""
        if self.task != "detection" or "anchor_spec" not in self.extra:
            raise ContractError("this model's contract has no anchors: not a detector")
        try:
            return DetectionSettings.from_extra(self.extra)
        except (KeyError, TypeError, ValueError) as e:
            raise ContractError(f"bad detection block in the contract: {e!r}") from None

    def replace(self, **changes: Any) -> DataContract:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["labels"] = list(self.labels)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["architecture"], d["extra"] = dict(self.architecture), dict(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataContract:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ContractError(f"unknown contract fields: {', '.join(sorted(unknown))}")
        try:
            return cls(**{
                **d,
                "input_shape": tuple(int(v) for v in d["input_shape"]),
                "labels": tuple(str(v) for v in d["labels"]),
                **{k: tuple(float(v) for v in d[k]) for k in ("mean", "std") if k in d},
            })
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ContractError):
                raise
            raise ContractError(f"bad contract: {e}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> DataContract:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ContractError(f"contract is not valid JSON: {e}") from None
        except RecursionError:
            raise ContractError("contract is not valid JSON (nested too deep)") from None
