"""Model registry: a name maps to a function returning that variant's family config.

Each family is a frozen dataclass of hyperparameters (`Family` subclass) whose methods build
the graph with whatever Keras module they are handed (Keras 3 or tf_keras), so one builder
makes both twins. Variants are tiny decorated functions, timm style:

    @register_model
    def resnet18() -> ResNet:
        return ResNet(block="basic", layers=(2, 2, 2, 2))
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from models.options import OptionError, suggest


class UnknownModelError(OptionError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True, kw_only=True)
class Family:
    """Hyperparameters every family accepts; subclasses add their own and build the graph.

    `backbone` returns named feature maps {"stride4": t, "stride8": t, ...} in order of depth
    (the last entry feeds the classifier); `head` turns them into logits.
    """
    width: float = 1.0     # channel multiplier
    dropout: float = 0.0   # before the classifier layer(s), where the family has it

    family: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    min_size: ClassVar[int] = 32   # smallest H/W the family supports
    # layers whose weights depend on the number of classes: layer name -> for each of its
    # weights, the axes indexed by class (a head swap copies the rows of shared labels)
    classifier: ClassVar[dict[str, tuple[tuple[int, ...], ...]]] = {"head_fc": ((1,), (0,))}

    def backbone(self, k: Any, x: Any) -> dict[str, Any]:
        raise NotImplementedError

    def head(self, k: Any, features: dict[str, Any], num_classes: int) -> Any:
        from models.layers import gap_head
        return gap_head(k, last(features), num_classes, self.dropout)

    def validate(self) -> None:
        if self.width <= 0:
            raise OptionError(f"width must be > 0, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise OptionError(f"dropout must be in [0, 1), got {self.dropout}")

    def hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def last(features: dict[str, Any]) -> Any:
    return next(reversed(features.values()))


F = TypeVar("F", bound=Callable[[], Family])
_REGISTRY: dict[str, Callable[[], Family]] = {}


def register_model(fn: F) -> F:
    """Register a variant under its function name; a second registration is an error."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def family_config(name: str) -> Family:
    """The default hyperparameters of a registered variant."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}{suggest(name, _REGISTRY)}; "
                                f"`python -m models list` shows all") from None
