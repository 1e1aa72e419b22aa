"""Fine-tuning (d2l section 14.2): start from a model trained on a larger source dataset,
replace its output layer for the target labels, and train briefly with a smaller learning rate.

    python -m pipeline finetune from=runs/source data=path/to/images out=runs/ft
    python -m pipeline finetune from=resnet50 weights=imagenet data=photos/ freeze=stage2
    python -m pipeline finetune from=model.keras data=shapes head_epochs=2 backbone_lr_mult=0.1

Two phases (pipeline.train.Phase): first only the new head trains (the backbone frozen, its
BatchNorm statistics untouched: the random head would otherwise push large gradients into good
features), then the whole net with the backbone at lr * backbone_lr_mult, optionally keeping its
lower layers (freeze=fraction or stage name: the most general features) frozen. Classifier rows of
labels that source and target share are copied (pipeline.transfer.replace_head). The run dir has
the same outputs as a training run; metrics.json adds which labels were shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from models import get_contract, load_model, resolve_config
from models.options import OptionError
from pipeline.data import natural_input_shape
from pipeline.pretrained import create_pretrained
from pipeline.train import Initializer, Phase, TrainConfig, TrainResult, train
from pipeline.transfer import replace_head


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """TrainConfig (data, augment, optimizer, schedule, ... for the target) plus where to start."""
    ALIASES: ClassVar[dict[str, str]] = {"from": "start"}
    start: str = ""                  # `from=`: a run dir, a .keras file, or a registry name + weights=
    weights: str = ""                # with from=<name>: "imagenet" or a local weights file (.h5)
    epochs: int = 6
    lr: float = 0.002                # smaller than training from scratch (the course's recipe)
    head_epochs: int = 1             # phase 1: only the new output layer trains
    freeze: float | str | None = None   # phase 2: backbone part kept frozen (0.5, "stage2", none)
    backbone_lr_mult: float = 0.1    # phase 2: backbone learning rate = lr * this

    def validate(self) -> None:
        super().validate()
        if not self.start:
            raise OptionError("from: give a run dir, a .keras file, or a model name with "
                              "weights=imagenet (from=runs/source)")
        if not 0 <= self.head_epochs < self.epochs:
            raise OptionError(f"head_epochs must be in 0..epochs-1 (epochs={self.epochs}), "
                              f"got {self.head_epochs}")
        if not 0 < self.backbone_lr_mult <= 10:
            raise OptionError(f"backbone_lr_mult must be in (0, 10], got {self.backbone_lr_mult}")
        if self.weights and _trained_source(self.start) is not None:
            raise OptionError(f"weights={self.weights} applies to from=<model name>, not to the "
                              f"trained model from={self.start}")
        if self.strategy == "multi_worker" and self.backbone_lr_mult != 1.0:
            raise OptionError("backbone_lr_mult needs Keras 3 optimizers; multi-worker runs train "
                              "with tf_keras (set backbone_lr_mult=1)")

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        source = Path(self.start).stem if _trained_source(self.start) else self.start
        return Path("runs") / f"finetune-{source}-{Path(self.data.source).name or 'data'}"


def _trained_source(start: str) -> Path | None:
    """The .keras file behind from=<run dir | .keras>, or None for a registry name."""
    path = Path(start)
    if path.is_dir():
        return path / "model.keras"
    if path.suffix == ".keras" or path.exists():
        return path
    return None


def starting_point(cfg: FinetuneConfig) -> Initializer:
    """Where the weights come from, as a pipeline.train.Initializer."""

    phases = tuple(p for p in (
        Phase(end=cfg.head_epochs, freeze=1.0, name="head") if cfg.head_epochs else None,
        Phase(end=cfg.epochs, freeze=cfg.freeze, backbone_lr_mult=cfg.backbone_lr_mult,
              name="fine-tune"),
    ) if p is not None)
    trained = _trained_source(cfg.start)
    info: dict[str, Any] = {"from": cfg.start}
    if trained is not None:
        source = load_model(trained)   # ModelFileError names the file if it is not usable
        contract = get_contract(source)

        def from_trained(class_names: tuple[str, ...]) -> Any:
            swap = replace_head(source, class_names, seed=cfg.seed)
            info.update(source_labels=list(contract.labels), shared_labels=swap.shared,
                        new_labels=swap.new)
            print(f"finetune: {trained} ({contract.architecture['name']}); classifier rows copied "
                  f"for {len(swap.shared)} shared label(s): {', '.join(swap.shared) or '-'}")
            return swap.model

        return Initializer(contract.input_shape, from_trained, phases, info)

    resolve_config(cfg.start, {})   # unknown name -> did-you-mean
    if not cfg.weights:
        raise OptionError(f"from={cfg.start} is a model name: say where its weights come from "
                          "(weights=imagenet or weights=/path/to/file.h5)")
    h, w, _ = cfg.model.input_shape or natural_input_shape(cfg.data)
    info.update(weights=cfg.weights, shared_labels=[], new_labels=None)

    def from_pretrained(class_names: tuple[str, ...]) -> Any:
        info["new_labels"] = list(class_names)
        return create_pretrained(cfg.start, weights=cfg.weights, num_classes=len(class_names),
                                 input_shape=(h, w, 3), labels=class_names,
                                 **{k: v for k, v in cfg.family_options().items() if k == "dropout"})

    return Initializer((h, w, 3), from_pretrained, phases, info)


def finetune(cfg: FinetuneConfig) -> TrainResult:
    """Fine-tune cfg.start on cfg.data; see the module docstring."""
    return train(cfg, init=starting_point(cfg))
