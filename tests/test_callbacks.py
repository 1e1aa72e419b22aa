"""pipeline.callbacks: best checkpoint + early stopping, and the resumable epoch log."""
import math

import keras
import pytest

from models import create_model
from pipeline.callbacks import BestCheckpoint, EpochLog, NaNGuard, TrainingDiverged, bind, read_log


@pytest.fixture(scope="module")
def model():
    return create_model("lenet_bn", num_classes=3, input_shape=(16, 16, 1), width=0.25)


def epoch_logs(acc, loss):
    return {"loss": 1.0, "accuracy": 0.5, "val_accuracy": acc, "val_loss": loss}


def run_epochs(cb, log, model, start, history):
    cb.set_model(model)
    log.set_model(model)
    for epoch, (acc, loss) in enumerate(history, start):
        logs = epoch_logs(acc, loss)
        for c in (log, cb):
            c.on_epoch_begin(epoch)
        for c in (log, cb):
            c.on_epoch_end(epoch, logs)
        if model.stop_training:
            return epoch
    return None


def test_saves_on_improvement_and_stops_after_patience(tmp_path, model):
    saved = []
    log = bind(keras, EpochLog)(tmp_path / "log.csv", lambda step: 0.1, 10)
    best = bind(keras, BestCheckpoint)(lambda w: saved.append(len(w)), log, patience=2)
    model.stop_training = False
    # epoch 2 ties epoch 1 on accuracy with a lower loss: a better model; then two worse epochs
    stopped = run_epochs(best, log, model, 0, [(0.5, 1.0), (0.8, 0.6), (0.8, 0.5), (0.7, 0.7), (0.6, 0.9),
                                               (0.9, 0.1)])
    assert stopped == 4 and best.stopped_epoch == 4
    assert best.best_epoch == 2 and best.best == 0.8 and len(saved) == 3
    model.stop_training = False


def test_min_delta_and_nan_epochs_do_not_count(tmp_path, model):
    saved = []
    log = bind(keras, EpochLog)(tmp_path / "log.csv", lambda step: 0.1, 10)
    best = bind(keras, BestCheckpoint)(lambda w: saved.append(1), log, min_delta=0.05)
    run_epochs(best, log, model, 0, [(0.5, 1.0), (0.52, 1.1), (math.nan, 1.0), (0.6, 0.9)])
    assert best.best_epoch == 3 and len(saved) == 2


def test_resume_rebuilds_state_from_the_log(tmp_path, model):
    path = tmp_path / "log.csv"
    log = bind(keras, EpochLog)(path, lambda step: step / 1000, 10)
    best = bind(keras, BestCheckpoint)(lambda w: None, log, patience=3)
    run_epochs(best, log, model, 0, [(0.5, 1.0), (0.9, 0.4), (0.7, 0.5), (0.6, 0.5)])
    # killed after epoch 3's row but before its backup: the re-run starts again at epoch 3
    log2 = bind(keras, EpochLog)(path, lambda step: step / 1000, 10)
    best2 = bind(keras, BestCheckpoint)(lambda w: None, log2, patience=3)
    model.stop_training = False
    stopped = run_epochs(best2, log2, model, 3, [(0.6, 0.5), (0.6, 0.5)])
    assert stopped == 4                            # wait counted epochs 2 and 3 of the first process
    assert best2.best_epoch == 1 and best2.best == 0.9
    rows = read_log(path)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["session"] for r in rows] == [1, 1, 1, 2, 2]
    assert rows[4]["lr"] == pytest.approx(0.04)    # lr at the epoch's first step (40)
    model.stop_training = False


def test_nan_guard_names_epoch_batch_and_fix():
    guard = bind(keras, NaNGuard, "TerminateOnNaN")("lr=10, optimizer=sgd")
    assert isinstance(guard, keras.callbacks.TerminateOnNaN)
    guard.on_epoch_begin(2)
    guard.on_batch_end(0, {"loss": 2.0})
    with pytest.raises(TrainingDiverged) as e:
        guard.on_batch_end(4, {"loss": float("inf")})
    assert str(e.value).startswith("training diverged: loss became inf in epoch 3, batch 5 (lr=10")


def test_epoch_seconds_is_wall_time_including_validation(tmp_path):
    """Validation (Keras' and the callbacks that add a val metric before the log) is part of an
    epoch's time, as other tools count it: 0.3 s spent after validation starts is in the row."""
    import time

    log = bind(keras, EpochLog)(tmp_path / "log.csv", lambda step: 0.1, 10)
    log.on_epoch_begin(0)
    log.on_test_begin()
    time.sleep(0.3)
    log.on_epoch_end(0, {"loss": 1.0})
    assert log.rows[0]["epoch_seconds"] >= 0.3
