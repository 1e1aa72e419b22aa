"""The typed config of `python -m pipeline compress` (and `pipeline.compress.compress(cfg)`).

    python -m pipeline compress from=runs/r1 method=prune prune.sparsity=0.75 epochs=4
    python -m pipeline compress from=runs/r1 method=qat out=runs/r1-qat lr=0.0003

Keys that are not compression options are training options (`epochs`, `lr`, `batch_size`,
`augment.*`, `data.*`, `early_stopping`, ...): they go to `train` and are applied OVER the
source run's own config.yaml, so a compression fine-tunes on the run's data and augmentation
unless told otherwise. Everything is checked in validate() - before TensorFlow is imported or
any file is written - with a did-you-mean for unknown keys and values.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from models.options import OptionError, suggest
from pipeline.config import build
from pipeline.rundir import RUN_CONFIG, read_run_config
from pipeline.train_config import TrainConfig

METHODS = ("prune", "qat", "prune_qat")
DENSE_WORDS = ("first", "classifier", "none")
# what a compression fine-tune changes in the source's training config unless the user sets it
TUNE_DEFAULTS: dict[str, Any] = {"epochs": 4, "schedule": {"warmup_epochs": 0.0},
                                 "early_stopping": {"patience": 0},
                                 "ema": 0.0}   # a source trained with ema= is fine-tuned without
LR_FACTOR = 0.1   # lr = source lr * this unless lr= is given (fine-tuning, not training anew)


class CompressError(ValueError):
    """The compression fine-tune failed (one line for the user)."""


@dataclass(frozen=True)
class PruneConfig:
    """Magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): the smallest weights of
    each pruned layer are zeroed, ramping sparsity from 0 to `sparsity` between begin_epoch and
    end_epoch (polynomial, power 3) or holding it from begin_epoch (constant)."""
    sparsity: float = 0.75
    schedule: Literal["polynomial", "constant"] = "polynomial"
    begin_epoch: float = 0.0
    end_epoch: float | None = None   # None: 60% of the epochs (the rest recovers accuracy)
    frequency: int = 0               # training steps between mask updates; 0: 4 per epoch
    structure: Literal["unstructured", "2:4"] = "unstructured"   # 2:4 = 2 zeros in every 4 weights
    # layers kept dense: names, `first` (first conv), `classifier` (the output layer), or `none`;
    # depthwise convs are never pruned (tfmot's choice: few weights, much accuracy)
    dense: tuple[str, ...] = ("first", "classifier")

    def validate(self) -> None:
        if not 0.0 < self.sparsity < 1.0:
            raise OptionError(f"prune.sparsity must be in (0, 1) (the fraction of zeros, e.g. 0.75), "
                              f"got {self.sparsity}")
        if self.begin_epoch < 0:
            raise OptionError(f"prune.begin_epoch must be >= 0, got {self.begin_epoch}")
        if self.end_epoch is not None and self.end_epoch <= self.begin_epoch:
            raise OptionError(f"prune.end_epoch ({self.end_epoch}) must be after prune.begin_epoch "
                              f"({self.begin_epoch})")
        if self.frequency < 0:
            raise OptionError(f"prune.frequency must be >= 0 (0 = 4 updates per epoch), got {self.frequency}")
        if "none" in self.dense and len(self.dense) > 1:
            raise OptionError(f"prune.dense: `none` cannot be combined with other layers ({self.dense})")

    @property
    def target(self) -> float:
        return 0.5 if self.structure == "2:4" else self.sparsity

    def steps(self, epochs: int, steps_per_epoch: int) -> dict[str, int]:
        """begin/end step, update frequency, and the first epoch (0-based) that ends at the
        target sparsity (the best checkpoint is chosen from that epoch on)."""
        freq = self.frequency or max(1, steps_per_epoch // 4)
        begin = int(round(self.begin_epoch * steps_per_epoch))
        if self.schedule == "constant" or self.structure == "2:4":
            end = begin
        else:
            end_epoch = self.end_epoch if self.end_epoch is not None else 0.6 * epochs
            end = max(begin + freq, int(round(end_epoch * steps_per_epoch)))
            end = begin + math.ceil((end - begin) / freq) * freq   # the last update lands on it
        return {"begin_step": begin, "end_step": end, "frequency": freq,
                "first_pruned_epoch": end // steps_per_epoch}

    def check_epochs(self, epochs: int) -> None:
        last = self.begin_epoch if self.schedule == "constant" else (
            self.end_epoch if self.end_epoch is not None else 0.6 * epochs)
        if last >= epochs:
            raise OptionError(f"prune: the target sparsity is reached at epoch {last:g}, but only "
                              f"{epochs} epochs run; lower prune.end_epoch/begin_epoch or raise epochs")


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training (Jacob et al. 2018; tfmot's 8-bit scheme): fake-quantized
    weights and activations while fine-tuning, so the int8 file is made from learned ranges."""
    # weight scales: per_channel (per output channel, as TFLite quantizes convs; depthwise
    # kernels too, through tfmot_ops.DepthwiseQuant) or per_tensor. auto = per_channel: the
    # converter folds each conv's BN scale (per channel) into the fake-quantized kernel, which
    # only per-channel scales survive; per-tensor conv kernels come out of it as float weights
    # that the export's calibration then re-quantizes (mobilenetv2 w0.5: top-1 agreement with
    # the QAT graph 0.32)
    weights: Literal["auto", "per_channel", "per_tensor"] = "auto"


@dataclass(frozen=True)
class CompressConfig:
    """Compress a trained run: magnitude pruning, QAT, or pruning then pruning-preserving QAT."""
    ALIASES: ClassVar[dict[str, str]] = {"from": "start"}
    EXTRA: ClassVar[str] = "train"   # any other key: a training option over the source's config
    start: str = ""                  # `from=`: a run dir (model.keras + config.yaml) or a .keras
    method: Literal["prune", "qat", "prune_qat"] = "prune"
    out: str = ""                    # default: <source run>-<method> beside the source run
    prune: PruneConfig = field(default_factory=PruneConfig)
    qat: QATConfig = field(default_factory=QATConfig)
    overwrite: bool = False
    train: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.start:
            raise OptionError("from: give a trained run dir or a .keras file (from=runs/r1)")
        source_model(self.start)
        tune = self.training()
        if tune.mixed_precision or tune.strategy not in ("auto", "default") or tune.xla or tune.ema:
            raise OptionError("compress trains on one device in float32 (tfmot's wrappers): drop "
                              "mixed_precision, xla, strategy and ema")
        if "model" in self.train:
            raise OptionError("model: compress keeps the source's architecture; only its training "
                              "options can change")
        if self.method in ("prune", "prune_qat"):
            self.prune.check_epochs(tune.epochs)

    def source_dir(self) -> Path:
        path = Path(self.start).expanduser()
        return path if path.is_dir() else path.parent

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        src = Path(self.start).expanduser()
        name = src.name if src.is_dir() else src.stem
        return src.parent / f"{name}-{self.method.replace('_', '-')}"

    def training(self) -> Any:
        """The TrainConfig of the fine-tune: the source run's config.yaml (or the defaults),
        TUNE_DEFAULTS and a 10x lower lr, then the user's training keys (validated)."""

        src = source_config(self.start)
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        raw = {k: v for k, v in src.items() if k in names and k not in ("out", "overwrite")}
        base = build(TrainConfig, raw, "from config.yaml")
        tune = build(TrainConfig, TUNE_DEFAULTS, "", base)
        given = dict(self.train)
        for key in given:
            if key not in names:
                known = sorted(names | {f.name for f in dataclasses.fields(CompressConfig)} | {"from"})
                raise OptionError(f"unknown key {key!r}{suggest(key, known)}; compress keys: from, "
                                  "method, out, prune.*, qat.*, overwrite, or a training key "
                                  "(epochs, lr, batch_size, data.*, augment.*, ...)")
        if "lr" not in given:
            tune = dataclasses.replace(tune, lr=base.lr * LR_FACTOR)
        return build(TrainConfig, given, "", tune)


def source_model(start: str) -> Path:
    """The .keras file behind from=<run dir | .keras> (OptionError when there is none)."""
    path = Path(start).expanduser()
    model = path / "model.keras" if path.is_dir() else path
    if model.suffix != ".keras" or not model.is_file():
        raise OptionError(f"from={start}: give a trained run dir (with model.keras) or a .keras file"
                          + ("" if path.exists() else " (no such path)"))
    return model


def source_config(start: str) -> dict[str, Any]:
    """The source run's config.yaml ({} for a bare .keras without one)."""
    path = Path(start).expanduser()
    cfg = (path if path.is_dir() else path.parent) / RUN_CONFIG
    return read_run_config(cfg) if cfg.is_file() else {}


@dataclass(frozen=True)
class CompressRunConfig(TrainConfig):
    """What a compression run's config.yaml holds: the fine-tune's full training config plus
    the `compress:` record (method, source, prune/qat options) that export and report read."""
    compress: dict[str, Any] = field(default_factory=dict)
