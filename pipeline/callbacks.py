"""Training callbacks that survive a killed run: an epoch log, the best-model checkpoint with
early stopping, and a NaN guard that stops with one clear line.

They are written once as plain mixins and bound to the Callback base class of the Keras that
trains (`bind(k, EpochLog)`; Keras 3 or tf_keras, see pipeline.strategy). Resuming works with
keras.callbacks.BackupAndRestore, which restores the weights and the epoch counter: on the
first epoch of a resumed fit, EpochLog drops log rows from epochs that are about to be re-run,
and BestCheckpoint rebuilds its best value and patience counter from the rows that remain, so
the CSV log (one row per epoch, atomically rewritten) is the single record of the run.
"""
from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from models.atomic import write_text
from models.options import OptionError

FIRST_COLUMNS = ("epoch", "session", "lr", "epoch_seconds")


class TrainingDiverged(OptionError):
    """The loss became NaN/Inf: almost always too high a learning rate; one line for the user."""


_BOUND: dict[tuple[str, type, str], type] = {}


def fit_verbosity(verbose: int, stream: Any = None) -> int:
    """Keras' fit(verbose=) for the config's: its progress bar (1) only on a terminal; into a
    file or a pipe (`make run > log`) it would write a \\r update per step, so one line per
    epoch (2) there, as Ultralytics' logs do."""
    import sys

    stream = sys.stdout if stream is None else stream
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return 2 if verbose == 1 and not tty else int(verbose)


def bind(k: Any, mixin: type, base: str = "Callback") -> type:
    """The class `mixin` + k.callbacks.<base>, made once per Keras module."""
    key = (k.__name__, mixin, base)
    if key not in _BOUND:
        _BOUND[key] = type(mixin.__name__, (mixin, getattr(k.callbacks, base)), {})
    return _BOUND[key]


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an epoch log as dicts of floats (epoch and session as ints); [] if absent."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {k: (float(v) if v not in ("", None) else math.nan)
                                   for k, v in raw.items()}
            row["epoch"], row["session"] = int(row["epoch"]), int(row["session"])
            rows.append(row)
    return rows


def _as_float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _finite(v: Any) -> bool:
    f = _as_float(v)
    return f is not None and math.isfinite(f)


class EpochLog:
    """CSV log: epoch (0-based), session (1 for the first process, +1 per resume), lr at the
    epoch's first step, epoch_seconds (the epoch's wall time: training, Keras' validation and the
    callbacks before this one, such as a detector's val mAP) and Keras' metrics."""

    def __init__(self, path: str | Path, lr_at: Callable[[int], float], steps_per_epoch: int):
        super().__init__()
        self.path = Path(path)
        self.lr_at = lr_at
        self.steps_per_epoch = steps_per_epoch
        self.rows: list[dict[str, Any]] = read_log(self.path)
        self.start_epoch: int | None = None
        self.session = 1
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.start_epoch is None:   # first epoch of this process: epochs >= it are re-run
            self.start_epoch = epoch
            self.rows = [r for r in self.rows if r["epoch"] < epoch]
            self.session = max((r["session"] for r in self.rows), default=0) + 1
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._t0   # wall: validation included, as other tools count
        row = {"epoch": epoch, "session": self.session,
               "lr": self.lr_at(epoch * self.steps_per_epoch), "epoch_seconds": seconds}
        if logs is not None:   # the callbacks after this one (TensorBoard) see the lr too
            logs["lr"] = row["lr"]
        row.update({k: f for k, f in ((k, _as_float(v)) for k, v in (logs or {}).items())
                    if f is not None})
        self.rows.append(row)
        self.write()
        self._t0 = 0.0

    def write(self) -> None:
        keys = list(FIRST_COLUMNS)
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, buf.getvalue())


class BestCheckpoint:
    """Saves the weights whenever `monitor` (an accuracy, higher is better) improves, ties broken
    by a lower `tiebreak` loss; with patience > 0 stops after that many epochs without one."""

    def __init__(self, save: Callable[[list], None], log: EpochLog, *, monitor: str = "val_accuracy",
                 tiebreak: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 first_epoch: int = 0):
        super().__init__()
        self.save, self.log = save, log
        self.monitor, self.tiebreak = monitor, tiebreak
        self.patience, self.min_delta = patience, min_delta
        self.first_epoch = first_epoch   # earlier epochs are never the best (nor count as waits)
        self.best = -math.inf
        self.best_loss = math.inf
        self.best_epoch = -1
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._restored = False

    def _update(self, epoch: int, logs: dict[str, Any]) -> bool:
        """Feed one epoch; True when it is the new best."""
        if epoch < self.first_epoch:
            return False
        value, loss = logs.get(self.monitor), logs.get(self.tiebreak, math.nan)
        if not _finite(value) or not _finite(logs.get("loss")):
            self.wait += 1
            return False
        value, loss = float(value), float(loss) if _finite(loss) else math.inf
        better = value > self.best + self.min_delta or (value >= self.best and loss < self.best_loss)
        if better:
            self.best, self.best_loss, self.best_epoch, self.wait = value, loss, epoch, 0
        else:
            self.wait += 1
        return better

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._restored:   # after EpochLog dropped the rows to be re-run
            self._restored = True
            for row in self.log.rows:
                self._update(row["epoch"], row)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._update(epoch, logs or {}):
            self.save(self.model.get_weights())
        elif self.patience and self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True


class NaNGuard:
    """keras.callbacks.TerminateOnNaN that raises TrainingDiverged naming the epoch, batch and a fix."""

    def __init__(self, hint: str = ""):
        super().__init__()
        self.hint = hint
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss):
            raise TrainingDiverged(
                f"training diverged: loss became {float(loss)} in epoch {self.epoch + 1}, batch "
                f"{batch + 1}{f' ({self.hint})' if self.hint else ''}; lower lr, add warmup "
                "(schedule.warmup_epochs=...) or check the data")


class TensorBoardScalars:
    """Epoch metrics and lr as TensorBoard scalars, in Keras' layout (train/ and validation/
    runs, tags epoch_loss, epoch_accuracy, epoch_learning_rate).

    Written with tf.summary.write and the scalars plugin's metadata, which is all
    tf.summary.scalar adds; keras.callbacks.TensorBoard would need the tensorboard package,
    which TensorFlow 2.21 no longer installs and is only needed to view the logs.
    """

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}

    def _writer(self, run: str) -> Any:
        import tensorflow as tf

        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(str(self.log_dir / run))
        return self._writers[run]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        values = dict(logs or {})
        if "lr" in values:
            values["learning_rate"] = values.pop("lr")
        for key, value in values.items():
            f = _as_float(value)
            if f is None or key in ("epoch", "session"):
                continue
            run, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(run).as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(f, tf.float32), step=epoch, metadata=meta)
        for w in self._writers.values():
            w.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()


def make_callbacks(k: Any, *, log: EpochLog, best: BestCheckpoint, hint: str, backup_dir: Path,
                   tensorboard_dir: Path, before_log: Sequence[Any] = (), ema: bool = False) -> Sequence[Any]:
    """Order matters: the guard raises before anything records a diverged epoch, callbacks that
    add metrics to the logs (before_log: a detector's val mAP) run next, the log row is written
    (and adds lr to the logs) before the checkpoint and TensorBoard read them, and the backup
    comes last. ema: the optimizer averages the weights; validation uses the average, which is
    swapped in at each epoch's end (before before_log and the checkpoint) and out at the next
    epoch's start (Keras 3)."""
    extra = {"double_checkpoint": True} if k.__name__ == "keras" else {}
    swap = [k.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
    return [bind(k, NaNGuard, "TerminateOnNaN")(hint), *swap, *before_log, log, best,
            bind(k, TensorBoardScalars)(tensorboard_dir),
            k.callbacks.BackupAndRestore(str(backup_dir), **extra)]
