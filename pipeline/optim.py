"""Optimizers and learning-rate schedules for `pipeline.train` (d2l 12.4-12.11: SGD, momentum,
RMSProp, Adam; d2l 12.11 learning-rate scheduling: step/factor, polynomial, cosine with warmup).

A schedule is a function of the optimizer step written once with TensorFlow ops and wrapped in
the `LearningRateSchedule` base class of whichever Keras runs the training (Keras 3, or tf_keras
for multi-worker runs, see pipeline.strategy), so both engines follow the same curve.

    step s (0-based), warmup W steps, T steps in all, t = s - W after warmup:
      warmup     lr = base * (s + 1) / W  (linear ramp, reaches base at s = W - 1; a run shorter
                 than the warmup ends on the ramp)
      constant   lr = base
      step       lr = base * gamma ** floor(t / (step_epochs * steps_per_epoch))
      exponential lr = base * gamma ** (t / steps_per_epoch) (gamma per epoch)
      polynomial lr = min_lr + (base - min_lr) * (1 - t / (T - W)) ** power
      cosine     lr = min_lr + (base - min_lr) * (1 + cos(pi * t / (T - W))) / 2

Weight decay is the decoupled form (Loshchilov & Hutter 2019, "AdamW") that every Keras
optimizer implements (w -= lr * wd * w each step); it is not applied to biases and BatchNorm
gamma/beta, the usual practice (Goyal et al. 2017).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from models.options import OptionError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "polynomial", "cosine")
NO_DECAY = ("bias", "gamma", "beta")   # variable names (kernel/bias/gamma/beta/...) left undecayed


@dataclass(frozen=True)
class ScheduleConfig:
    """The `schedule:` section; `schedule=cosine` sets its name."""
    SHORTHAND: ClassVar[str] = "name"
    name: Literal["constant", "step", "exponential", "polynomial", "cosine"] = "cosine"
    warmup_epochs: float = 0.0   # linear ramp from ~0 to lr over these epochs, then the schedule
    gamma: float = 0.1           # step: factor per drop; exponential: factor per epoch
    step_epochs: int = 10        # step: epochs between drops
    power: float = 1.0           # polynomial: 1 = linear decay
    min_lr: float = 0.0          # polynomial/cosine: lr at the last step

    def validate(self) -> None:
        if self.warmup_epochs < 0:
            raise OptionError(f"schedule.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 < self.gamma <= 1:
            raise OptionError(f"schedule.gamma must be in (0, 1], got {self.gamma}")
        if self.step_epochs < 1:
            raise OptionError(f"schedule.step_epochs must be >= 1, got {self.step_epochs}")
        if self.power <= 0:
            raise OptionError(f"schedule.power must be > 0, got {self.power}")
        if self.min_lr < 0:
            raise OptionError(f"schedule.min_lr must be >= 0, got {self.min_lr}")


@dataclass(frozen=True)
class LRCurve:
    """A schedule resolved to steps: lr(step) for step = optimizer iterations (0-based)."""
    kind: str
    base_lr: float
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int = 0
    gamma: float = 0.1
    step_steps: int = 1
    power: float = 1.0
    min_lr: float = 0.0

    def __call__(self, step: Any) -> Any:
        """The lr at `step` (a scalar tensor or number) as a float32 tensor."""
        import tensorflow as tf

        s = tf.cast(step, tf.float32)
        base = tf.constant(self.base_lr, tf.float32)
        warm = float(self.warmup_steps)
        t = tf.maximum(s - warm, 0.0)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        if self.kind == "constant":
            lr = base
        elif self.kind == "step":
            lr = base * tf.pow(self.gamma, tf.floor(t / float(self.step_steps)))
        elif self.kind == "exponential":
            lr = base * tf.pow(self.gamma, t / float(self.steps_per_epoch))
        elif self.kind == "polynomial":
            frac = tf.minimum(t / span, 1.0)
            lr = self.min_lr + (base - self.min_lr) * tf.pow(1.0 - frac, self.power)
        elif self.kind == "cosine":
            frac = tf.minimum(t / span, 1.0)
            lr = self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + tf.cos(math.pi * frac))
        else:
            raise OptionError(f"unknown schedule {self.kind!r}; known: {', '.join(SCHEDULES)}")
        if self.warmup_steps > 0:
            lr = tf.where(s < warm, base * (s + 1.0) / warm, lr)
        return lr

    def value(self, step: int) -> float:
        return float(self(step))


def lr_curve(cfg: ScheduleConfig, *, lr: float, epochs: int, steps_per_epoch: int) -> LRCurve:
    steps_per_epoch = max(1, int(steps_per_epoch))
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = epochs * steps_per_epoch
    return LRCurve(kind=cfg.name, base_lr=lr, total_steps=total, steps_per_epoch=steps_per_epoch,
                   warmup_steps=warmup, gamma=cfg.gamma, step_steps=cfg.step_epochs * steps_per_epoch,
                   power=cfg.power, min_lr=cfg.min_lr)


_SCHEDULE_CLASSES: dict[str, type] = {}


def keras_schedule(k: Any, curve: LRCurve) -> Any:
    """`curve` as an instance of k.optimizers.schedules.LearningRateSchedule (k: keras or tf_keras)."""
    cls = _SCHEDULE_CLASSES.get(k.__name__)
    if cls is None:
        def call(self, step):
            return self.curve(step)

        def get_config(self):
            return dict(vars(self.curve))

        def init(self, curve):
            self.curve = curve

        cls = type("PipelineSchedule", (k.optimizers.schedules.LearningRateSchedule,),
                   {"__init__": init, "__call__": call, "get_config": get_config})
        _SCHEDULE_CLASSES[k.__name__] = cls
    return cls(curve)


def make_optimizer(k: Any, name: str, learning_rate: Any, *, momentum: float = 0.9,
                   weight_decay: float = 0.0, ema: float = 0.0) -> Any:
    """A k.optimizers instance; `momentum` is used by momentum, nesterov and rmsprop; `ema` > 0
    keeps a moving average of the weights with that momentum (Keras' use_ema; the trainer swaps
    it in for validation and checkpoints with keras.callbacks.SwapEMAWeights)."""
    opts = k.optimizers
    wd = weight_decay if weight_decay > 0 else None
    avg = {"use_ema": True, "ema_momentum": ema} if ema > 0 else {}
    if name == "sgd":
        opt = opts.SGD(learning_rate, weight_decay=wd, **avg)
    elif name in ("momentum", "nesterov"):
        opt = opts.SGD(learning_rate, momentum=momentum, nesterov=name == "nesterov", weight_decay=wd, **avg)
    elif name == "rmsprop":
        opt = opts.RMSprop(learning_rate, rho=0.9, momentum=momentum, weight_decay=wd, **avg)
    elif name == "adam":
        opt = opts.Adam(learning_rate, weight_decay=wd, **avg)
    elif name == "adamw":
        opt = opts.AdamW(learning_rate, weight_decay=weight_decay, **avg)
    else:
        raise OptionError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if weight_decay > 0:
        opt.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return opt
