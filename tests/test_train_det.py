"""Detection training through the shared trainer: the loss on hand-made targets, labelling in
tf.data, and a tiny detector whose loss falls (run dir with mAP metrics and plots)."""
import csv
import json
import math

import numpy as np
import pytest
from margins import at_most

from models.options import OptionError
from pipeline.config import load_config
from pipeline.tasks.detection.train import DetectionConfig, make_loss
from pipeline.train import TrainConfig, train


def _targets():
    # 1 image, 8 anchors, 2 classes (+ background): anchor 0 is class 1 with offsets (1, 0, 0, 0)
    y_true = np.zeros((1, 8, 5), np.float32)
    y_true[0, 0] = [1.0, 0, 0, 0, 1]
    y_pred = np.zeros((1, 8, 4 + 3), np.float32)     # all logits 0: CE = log 3 everywhere
    return y_true, y_pred


def test_hard_negative_loss_on_hand_made_targets():
    y_true, y_pred = _targets()
    loss = make_loss(DetectionConfig(neg_ratio=3, min_negatives=0), 2)(y_true, y_pred).numpy()
    # 1 positive + 3 hardest negatives, each CE log 3; smooth L1 of offset 1: 0.5; over 1 positive
    np.testing.assert_allclose(loss, [4 * math.log(3) + 0.5], rtol=1e-5)
    # a confident right background prediction on anchors 1-4 makes them easy: the others are mined
    y_pred[0, 1:5, 4] = 10.0
    mined = make_loss(DetectionConfig(neg_ratio=3, min_negatives=0), 2)(y_true, y_pred).numpy()
    np.testing.assert_allclose(mined, loss, rtol=1e-5)


def test_focal_loss_on_hand_made_targets():
    y_true, y_pred = _targets()
    loss = make_loss(DetectionConfig(loss="focal", focal_gamma=2.0, focal_alpha=0.25), 2)(y_true, y_pred)
    ce, p = math.log(3), 1 / 3
    expected = 0.25 * (1 - p) ** 2 * ce + 7 * 0.75 * (1 - p) ** 2 * ce + 0.5
    np.testing.assert_allclose(loss.numpy(), [expected], rtol=1e-5)


def test_task_and_model_must_agree():
    with pytest.raises(OptionError, match="model=ssd or model=yolo"):
        load_config(TrainConfig, ["task=detection", "model=resnet18"])
    with pytest.raises(OptionError, match="task=detection"):
        load_config(TrainConfig, ["model=ssd"])
    with pytest.raises(OptionError, match="did you mean"):
        load_config(TrainConfig, ["task=detection", "model=ssd", "model.backbone=resnet19"])


def test_tiny_detector_loss_falls(task_runs):
    """The task harness's detector (conftest.TRAIN: 64 scenes, 4 epochs): loss falls, val mAP per
    epoch, the run dir's mAP metrics and plots."""
    result = task_runs["detection"].result
    with open(result.run_dir / "logs" / "train.csv") as f:
        log = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in log]
    at_most("tiny SSD last/first epoch loss", losses[-1] / losses[0], 0.7)
    assert all("val_map" in r for r in log)
    m = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("test_map", "test_map50", "val_map", "train_map", "test_ar100", "per_class_ap",
                "num_anchors"):
        assert key in m, key
    assert set(m["per_class_ap"]) == {"circle", "square", "triangle"}
    for png in ("curves.png", "pr_curves.png", "val_predictions.png"):
        assert (result.run_dir / png).stat().st_size > 3000
    from models import get_contract, load_model

    assert get_contract(load_model(result.run_dir / "model.keras")).task == "detection"


def test_labelling_in_tf_data_marks_positives():
    from models import anchors_of, create_detector, get_contract
    from pipeline.data.base import ShapesDetConfig
    from pipeline.tasks.detection.scenes import generate_scenes
    from pipeline.tasks.detection.train import make_dataset

    split = generate_scenes(ShapesDetConfig(images=8, size=64), seed=0)
    model = create_detector("ssd", backbone="mobilenetv3_small", num_classes=3, input_shape=(64, 64, 3),
                            width=0.25)
    anchors = anchors_of(get_contract(model))
    x, y = next(iter(make_dataset(split, anchors, batch_size=8, training=False, augment=None, seed=0,
                                  match_iou=0.5, max_objects=0)))
    assert x.shape == (8, 64, 64, 3) and y.shape == (8, len(anchors), 5)
    pos = (y[..., 4] > 0).numpy().sum(axis=1)
    n_obj = np.array([len(b) for b in split.boxes])
    assert (pos >= n_obj).all() and ((pos > 0) == (n_obj > 0)).all()   # each box claims >= 1 anchor
    assert set(np.unique(y[..., 4].numpy())) <= {0.0, 1.0, 2.0, 3.0}


def test_killed_detection_run_resumes(tmp_path):
    """SIGKILL after two backed-up epochs, re-run the same command: it continues, the val mAP
    rows before the kill are kept and the best checkpoint is chosen over all epochs."""
    import os
    import signal
    import subprocess
    import time

    from train_helpers import ROOT, env, run_cli, train_cmd

    out = tmp_path / "run"
    args = ["task=detection", "data=shapes_det", "data.shapes_det.images=40", "data.shapes_det.size=64",
            "model=ssd", "model.backbone=lenet_bn", "model.head_channels=16", "batch_size=8",
            "augment=ssd", "verbose=2", "epochs=6", f"out={out}"]
    metadata = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(train_cmd(*args), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if json.loads(metadata.read_text())["epoch"] >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no backup within 240 s"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    r = run_cli(*args, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(out / "logs" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {int(x["session"]) for x in rows} == {1, 2}
    m = json.loads((out / "metrics.json").read_text())
    best = max(range(6), key=lambda i: float(rows[i]["val_map"]))
    assert m["resumed_from_epoch"] >= 2 and m["best_epoch"] == best + 1


def test_detection_trains_with_mixed_precision(tmp_path):
    cfg = load_config(TrainConfig, [
        "task=detection", "data=shapes_det", "data.shapes_det.images=24", "data.shapes_det.size=64",
        "model=ssd", "model.backbone=lenet_bn", "model.head_channels=16", "epochs=1", "batch_size=8",
        "mixed_precision=true", "detection.loss=focal", "verbose=0", f"out={tmp_path / 'run'}"])
    result = train(cfg)
    assert result.metrics["precision"] == "mixed_bfloat16" and np.isfinite(result.metrics["val_map"])
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"   # only while training
