"""pipeline.train: config checks, CLI, the run directory, NaN guard, mixed precision."""
import csv
import json

import numpy as np
import pytest
from train_helpers import TINY, run_cli

from models.options import OptionError
from pipeline.config import load_config
from pipeline.train import TrainConfig, precision_policy, train

METRIC_KEYS = {"test_accuracy", "val_accuracy", "train_accuracy", "generalization_gap", "train_seconds",
               "images_per_second", "epochs_run", "best_epoch", "per_class_accuracy", "test_loss",
               "wall_seconds", "strategy", "replicas", "precision", "confusion_matrix"}


@pytest.mark.parametrize("args,message", [
    (["epoch=3"], "unknown key 'epoch' (did you mean: epochs?)"),
    (["optimiser=adam"], "unknown key 'optimiser' (did you mean: optimizer?)"),
    (["optimizer=adan"], "optimizer: 'adan' is not one of"),
    (["model=resnet81"], "unknown model 'resnet81' (did you mean: resnet18"),
    (["model=resnet18", "model.widht=0.5"], "'widht' (did you mean: width?)"),
    (["early_stoping=3"], "(did you mean: early_stopping"),
    (["strategy=mirored"], "(did you mean: mirrored"),
    (["lr=0"], "lr must be > 0"),
    (["epochs=two"], "epochs: expected an integer"),
    (["label_smoothing=1.5"], "label_smoothing must be in [0, 1)"),
    (["dropout=0.2", "model.dropout=0.3"], "dropout is given twice"),
    (["model.input_shape=32,32"], "model.input_shape: expected 3 values"),
])
def test_bad_options_are_one_clear_line(args, message):
    with pytest.raises(OptionError) as e:
        load_config(TrainConfig, args)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_shorthands_and_family_options():
    cfg = load_config(TrainConfig, ["data=digits", "model=resnet18", "model.width=0.5", "dropout=0.1",
                                    "schedule=step", "early_stopping=4", "augment=standard"])
    assert cfg.data.source == "digits" and cfg.model.name == "resnet18"
    assert cfg.family_options() == {"width": 0.5, "dropout": 0.1}
    assert cfg.schedule.name == "step" and cfg.early_stopping.patience == 4
    assert cfg.augment.preset == "standard"


@pytest.mark.parametrize("args,preset,hflip,fill", [
    ([], "light", False, "constant"),
    (["augment.fill=reflect"], "light", False, "reflect"),       # a key keeps TrainConfig's preset
    (["augment=standard"], "standard", True, "reflect"),        # the shorthand picks a new preset
    (["augment=standard", "augment.hflip=false"], "standard", False, "reflect"),
])
def test_augment_keys_apply_on_top_of_the_train_default(args, preset, hflip, fill):
    aug = load_config(TrainConfig, args).augment
    assert (aug.preset, aug.hflip, aug.fill) == (preset, hflip, fill)


def test_schedule_keys_keep_the_warmup_default():
    cfg = load_config(TrainConfig, ["schedule.min_lr=0.001"])
    assert cfg.schedule.name == "cosine" and cfg.schedule.warmup_epochs == 1.0


def test_cli_help_lists_options_and_global_batch():
    r = run_cli("--help", timeout=60)
    assert r.returncode == 0, r.stderr
    for key in ("schedule.warmup_epochs", "model.input_shape", "early_stopping.patience", "augment.preset",
                "data.source", "mixed_precision", "strategy"):
        assert key in r.stdout
    assert "global" in r.stdout
    # section defaults are TrainConfig's (light augmentation, 1 warmup epoch), not the classes' own
    assert "'light'" in next(line for line in r.stdout.splitlines() if "augment.preset" in line)
    assert "1.0" in next(line for line in r.stdout.splitlines() if "schedule.warmup_epochs" in line)


def test_cli_bad_value_exits_2_with_one_line():
    r = run_cli("data=digits", "optimizer=adan", timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: optimizer:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    r = run_cli(*TINY, "optimizer=sgd", "lr=1.0e+10", "epochs=2", f"out={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged: loss became") and "lr=1e+10" in line
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.fixture(scope="module")
def tiny_run(task_runs):
    """The task harness's classification run (conftest.TRAIN: TINY, 3 epochs), also exported."""
    return task_runs["classification"].cfg, task_runs["classification"].result


def test_run_dir_holds_every_artifact(tiny_run):
    cfg, result = tiny_run
    root = result.run_dir
    for name in ("config.yaml", "model.keras", "metrics.json", "curves.png", "confusion_matrix.png",
                 "logs/train.csv"):
        assert (root / name).is_file() and (root / name).stat().st_size > 0, name
    assert list((root / "logs" / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert list((root / "logs" / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    assert not (root / "backup").exists()        # BackupAndRestore cleans up after a finished run
    assert not list(root.glob(".*"))             # no temp files left by atomic writes
    assert (root / "curves.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((root / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs_run"] == 3
    assert set(metrics["per_class_accuracy"]) == {"circle", "square", "triangle"}
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["num_test"]
    assert load_config(TrainConfig, [], root / "config.yaml") == cfg


def test_saved_model_carries_labels_and_matches_metrics(tiny_run):
    from models import get_contract, load_model
    from pipeline.data import load_dataset, make_tf_dataset
    from pipeline.tasks.classification.task import evaluate_split as evaluate

    cfg, result = tiny_run
    model = load_model(result.paths["model"])
    contract = get_contract(model)
    assert contract.labels == ("circle", "square", "triangle") and contract.input_shape == (32, 32, 3)
    assert model.get_layer("probs").dtype == "float32"
    data = load_dataset(cfg.data, image_size=(32, 32), channels=3)
    ds = make_tf_dataset(data.test, image_size=(32, 32), channels=3, num_classes=3, batch_size=8,
                         training=False)
    assert evaluate(model, ds, 3)["accuracy"] == pytest.approx(result.metrics["test_accuracy"])


def test_csv_log_has_one_row_per_epoch(tiny_run):
    _, result = tiny_run
    with open(result.paths["log"]) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"lr", "epoch_seconds", "loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    assert all(r["session"] == "1" for r in rows)
    best = result.metrics["best_epoch"]
    assert float(rows[best - 1]["val_accuracy"]) == max(float(r["val_accuracy"]) for r in rows)


def test_finished_run_is_not_overwritten(tiny_run):
    cfg, result = tiny_run
    with pytest.raises(OptionError, match="holds a finished run"):
        train(cfg)


def test_precision_policy_is_scoped():
    import keras

    from models import create_model

    with precision_policy(keras, True) as policy:
        model = create_model("lenet_bn", num_classes=3, input_shape=(16, 16, 1), width=0.25)
    assert policy == "mixed_bfloat16"   # no GPU here
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert model.get_layer("conv1_conv").variable_dtype == "float32"
    assert model.get_layer("probs").compute_dtype == "float32"
    assert model.predict(np.zeros((1, 16, 16, 1), np.float32), verbose=0).dtype == np.float32
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError), precision_policy(keras, True):
        raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mixed_precision_and_xla_train(tmp_path):
    import keras

    from models import load_model

    cfg = load_config(TrainConfig, [*TINY, "epochs=1", f"out={tmp_path}", "mixed_precision=true",
                                    "xla=true", "verbose=0"])
    result = train(cfg)
    assert result.metrics["precision"] == "mixed_bfloat16" and result.metrics["xla"] is True
    assert keras.mixed_precision.global_policy().name == "float32"
    saved = load_model(result.paths["model"])
    assert saved.get_layer("conv1_conv").compute_dtype == "float32"   # model.keras is float32


def test_train_seconds_is_wall_time_including_validation(tmp_path, monkeypatch):
    """train_seconds (metrics.json, the summary line, the benches) counts what the task's per-epoch
    validation takes: a val callback that sleeps 0.4 s makes 2 epochs at least 0.8 s."""
    import time

    import keras

    from pipeline.tasks import get_task

    class SlowVal(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(0.4)

    task = get_task("classification")
    monkeypatch.setattr(task, "epoch_callbacks", lambda k, data, shape: [SlowVal()])
    result = train(load_config(TrainConfig, [*TINY, "epochs=2", "verbose=0", f"out={tmp_path / 'run'}"]))
    m = result.metrics
    assert m["train_seconds"] >= 0.8 and m["train_seconds"] <= m["wall_seconds"]
    rows = list(csv.DictReader(open(result.paths["log"])))
    assert all(float(r["epoch_seconds"]) >= 0.4 for r in rows)


def test_ema_validates_and_saves_the_weight_average(tmp_path, monkeypatch):
    """ema=0.9: every epoch ends with the average swapped in (what validation, the checkpoint and
    model.keras see), equal to the average computed by hand from the raw weights after each step
    (Keras' use_ema: the first step copies, then avg = m * avg + (1 - m) * w), and the next epoch
    trains on from the raw weights, not from the average."""
    import keras

    from models import load_model
    from pipeline.tasks import get_task

    seen = {"raw": [], "begin": [], "end": []}

    def weights(model):
        return [v.numpy().copy() for v in model.trainable_weights]

    class Spy(keras.callbacks.Callback):   # runs after SwapEMAWeights (task.epoch_callbacks' place)
        def on_epoch_begin(self, epoch, logs=None):
            seen["begin"].append(weights(self.model))

        def on_train_batch_end(self, batch, logs=None):
            seen["raw"].append(weights(self.model))

        def on_epoch_end(self, epoch, logs=None):
            seen["end"].append((len(seen["raw"]), weights(self.model)))

    monkeypatch.setattr(get_task("classification"), "epoch_callbacks", lambda k, data, shape: [Spy()])
    result = train(load_config(TrainConfig, [*TINY, "epochs=2", "ema=0.9", "verbose=0", "lr=0.01",
                                             "early_stopping.restore_best=false", f"out={tmp_path / 'r'}"]))
    avg, expected = None, []
    for w in seen["raw"]:
        avg = w if avg is None else [0.9 * a + 0.1 * x for a, x in zip(avg, w)]
        expected.append(avg)
    for steps, at_end in seen["end"]:
        for got, want in zip(at_end, expected[steps - 1]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    first_epoch_steps = seen["end"][0][0]
    for got, raw in zip(seen["begin"][1], seen["raw"][first_epoch_steps - 1]):
        # swapped back (by add/subtract: 1-ulp rounding): epoch 2 starts from the raw weights
        np.testing.assert_allclose(got, raw, rtol=1e-5, atol=1e-7)
    gap = max(float(np.abs(a - b).max()) for a, b in zip(seen["raw"][-1], expected[-1]))
    assert gap > 1e-3   # the average is not the raw weights: the checks above can tell them apart
    saved = load_model(result.paths["model"])
    for got, want in zip([v.numpy() for v in saved.trainable_weights], expected[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_ema_is_refused_where_it_cannot_apply():
    with pytest.raises(OptionError, match="ema must be 0"):
        load_config(TrainConfig, ["ema=1.5"])
