"""The training configs (`python -m pipeline train key=value ...`, YAML `--config`) and what a
run returns: TrainConfig with its model and early-stopping sections, the Phase/Initializer hooks
fine-tuning and compression start a run with, and TrainResult. pipeline.train runs them (and
re-exports these names)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from models import resolve_config
from models.detector import DETECTORS, split_options
from models.options import OptionError, suggest
from pipeline.augment import AugmentConfig
from pipeline.data import DataConfig
from pipeline.optim import ScheduleConfig
from pipeline.tasks import TASKS, get_task
from pipeline.tasks.detection.config import DetectionConfig


@dataclass(frozen=True)
class ModelConfig:
    """The `model:` section: `model=resnet18 model.width=0.5` (family options go to `options`)."""
    SHORTHAND: ClassVar[str] = "name"
    EXTRA: ClassVar[str] = "options"
    name: str = "auto"       # auto: a recipe picked from the data (pipeline.recipes)
    input_shape: tuple[int, int, int] | None = None   # (H, W, C); None = the data's natural shape
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:

        if self.name == "auto":
            pass   # resolved from the data at the start of training (pipeline.recipes)
        elif self.name in DETECTORS:
            split_options(self.name, self.options)  # detector + backbone options
        else:
            resolve_config(self.name, self.options)   # unknown model/option -> OptionError
        if self.input_shape is not None and (min(self.input_shape) < 1 or self.input_shape[2] not in (1, 3)):
            raise OptionError(f"model.input_shape must be H,W,C with C 1 or 3, got {self.input_shape}")


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """The `early_stopping:` section: `early_stopping=5` stops after 5 epochs without a better
    val accuracy; restore_best keeps the best epoch's weights in model.keras (else the last)."""
    SHORTHAND: ClassVar[str] = "patience"
    patience: int = 0         # 0 = off
    min_delta: float = 0.0    # smallest val-accuracy gain that counts as better
    restore_best: bool = True

    def validate(self) -> None:
        if self.patience < 0 or self.min_delta < 0:
            raise OptionError("early_stopping.patience and early_stopping.min_delta must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    task: str = "classification"     # a name of pipeline.tasks.TASKS: classification | detection
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # light (shift, zoom, brightness, contrast) without flips, black fill: safe for digits and
    # text too (reflect mirrors strokes that touch the border into the image)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig("light", hflip=False,
                                                                         fill="constant"))
    epochs: int = 15
    batch_size: int = 64             # global: split across devices/workers
    optimizer: Literal["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"] = "adamw"
    lr: float = 0.02
    momentum: float = 0.9            # momentum, nesterov, rmsprop
    weight_decay: float = 0.05       # decoupled (lr * wd * w per step); not on biases / BatchNorm
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig("cosine", warmup_epochs=1.0))
    label_smoothing: float = 0.0
    # exponential moving average of the weights (YOLO's "EMA"): 0 = off, else the momentum, e.g.
    # 0.99 (about the last 100 steps); validation, checkpoints and model.keras use the average
    ema: float = 0.0
    dropout: float | None = None     # sets the family's dropout option
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    seed: int = 0
    out: str = ""                    # run dir; "" = runs/<model>-<data>
    overwrite: bool = False          # replace a finished or interrupted run in `out`
    mixed_precision: bool = False    # mixed_float16 on GPU, mixed_bfloat16 on CPU
    xla: bool = False                # jit_compile the train step
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = "auto"
    verbose: int = 1                 # 0 silent, 1 progress bar, 2 one line per epoch
    detection: DetectionConfig = field(default_factory=DetectionConfig)   # loss etc., task=detection
    # the dotted keys the user set (pipeline.config.load_config), for the data-driven recipe
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False,
                                  metadata={"internal": True})

    def validate(self) -> None:
        checks = [(self.epochs >= 1, "epochs must be >= 1"),
                  (self.batch_size >= 1, "batch_size must be >= 1"),
                  (self.lr > 0, "lr must be > 0"),
                  (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
                  (self.weight_decay >= 0, "weight_decay must be >= 0"),
                  (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
                  (self.ema == 0 or 0.5 <= self.ema < 1, "ema must be 0 (off) or a momentum in [0.5, 1)"),
                  (self.dropout is None or 0 <= self.dropout < 1, "dropout must be in [0, 1)"),
                  (self.verbose in (0, 1, 2), "verbose must be 0, 1 or 2")]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)
        if self.dropout is not None and "dropout" in self.model.options:
            raise OptionError("dropout is given twice (dropout= and model.dropout=); keep one")
        if self.task not in TASKS:
            raise OptionError(f"task={self.task}: not one of {', '.join(TASKS)}{suggest(self.task, TASKS)}")
        # model=auto (the task's recipe) picks the model after validation
        if self.model.name != "auto":
            get_task(self.task).check_model(self.model.name)

    def family_options(self) -> dict[str, Any]:
        extra = {"dropout": self.dropout} if self.dropout is not None else {}
        return {**self.model.options, **extra}

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return Path("runs") / f"{self.model.name}-{Path(self.data.source).name or 'data'}"


@dataclass(frozen=True)
class Phase:
    """One `fit` of a run, up to epoch `end` (exclusive): which lower part of the backbone stays
    frozen and the backbone's learning-rate multiplier (pipeline.transfer). A plain training run
    is one phase with nothing frozen; fine-tuning is a head-only phase, then the whole net."""
    end: int
    freeze: float | str | None = None
    backbone_lr_mult: float = 1.0
    name: str = "train"


@dataclass
class Initializer:
    """A run that starts from given weights (fine-tuning) instead of a fresh model.

    make_model(class_names) returns a float32 Keras 3 model with the starting weights and one
    output per class (its contract says how to rebuild it); `info` goes into metrics.json.
    """
    input_shape: tuple[int, int, int]
    make_model: Any
    phases: tuple[Phase, ...]
    info: dict[str, Any] = field(default_factory=dict)
    stage: str = "finetune"          # metrics.json key that holds `info` and the phases
    # hooks for stages that train another form of the model (pipeline.compress: tfmot wrappers
    # on the tf_keras twin); None = train the plain twin of the training Keras
    keras_module: Any = None         # the Keras that trains (None: the strategy's)
    wrap: Any = None                 # wrap(twin with the starting weights, steps/epoch) -> model to fit
    keeper_weights: Any = None       # keeper_weights(fitted model) -> weights for model.keras
    callbacks: tuple[Any, ...] = ()  # callbacks(k) -> extra callbacks, run before the others
    first_best_epoch: int = 0        # earlier epochs never count as best (pruning ramps up)
    finish: Any = None               # finish(fitted model, final keras model, dataset(split)) -> dict


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    paths: dict[str, Path]
    model: Any = field(default=None, repr=False)   # Keras 3 model with the saved weights
