"""Activation ranges of a fresh QAT model, from the data instead of tfmot's +-6 start.

tfmot's MovingAverageQuantizer starts every range at [-6, 6] and moves it by an EMA of decay
0.999 (fixed), so after a few hundred steps a range is still mostly its start: on a tiny
mobilenetv2 after one QAT epoch every activation scale was ~0.047 (12/255), whatever the layer's
real range. Such coarse grids make the fake-quant graph and the int8 file round apart layer
after layer (top-1 agreement 0.81). RangeWarmup replaces each EMA range with the mean of the
first batches' own ranges. The batch range is read back from the EMA update itself,
new = d * old + (1 - d) * batch, so no tfmot internals are needed. Imported only by the
compression worker (tfmot's process).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tf_keras

DECAY = 0.999   # tfmot's MovingAverageQuantizer.ema_decay
# the range variables of tfmot's activation/output quantizers (weight quantizers record the
# weights' range each step; the input QuantizeLayer is set to 0..255 by wrap_qat)
EMA_NAMES = ("output", "post_activation", "pre_activation")


def ema_range_vars(model: Any) -> list[Any]:
    out = []
    for w in model.non_trainable_weights:
        base, _, bound = w.name.rpartition("/")[2].split(":")[0].rpartition("_")
        if bound in ("min", "max") and base in EMA_NAMES:
            out.append(w)
    return out


class RangeWarmup(tf_keras.callbacks.Callback):
    """For the first `batches` training batches of a fresh run, set every EMA range to the mean
    of the batch ranges seen so far (a resumed run keeps its restored ranges)."""

    def __init__(self, batches: int = 8) -> None:
        super().__init__()
        self.batches = batches
        self.vars: list[Any] = []
        self.active = False

    def on_train_begin(self, logs: Any = None) -> None:
        self.active = int(self.model.optimizer.iterations.numpy()) == 0
        self.vars = ema_range_vars(self.model) if self.active else []
        self.sums = [np.zeros(v.shape, np.float64) for v in self.vars]
        self.seen = 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.active:
            self.before = [v.numpy().astype(np.float64) for v in self.vars]

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if not self.active:
            return
        self.seen += 1
        for v, old, total in zip(self.vars, self.before, self.sums):
            total += (v.numpy().astype(np.float64) - DECAY * old) / (1.0 - DECAY)   # this batch's range
            v.assign((total / self.seen).astype(np.float32))
        self.active = self.seen < self.batches
