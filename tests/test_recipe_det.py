"""The detection default recipe (pipeline.tasks.detection.recipe): facts read from the
annotations, the main job's settings at the data's own size, epochs scaled to the image count,
every key the user sets wins."""
from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.data.base import ShapesDetConfig
from pipeline.tasks.detection.recipe import DETECTOR, DetFacts, apply, data_facts, epochs_for, pick
from pipeline.tasks.detection.scenes import generate_scenes, write_detection
from pipeline.train import TrainConfig


def resolved(*args):
    return apply(load_config(TrainConfig, ["task=detection", *args]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A YOLO folder of 40 scenes at 100 px (28 train, 6 val, 6 test), 2 classes."""
    root = tmp_path_factory.mktemp("det")
    return write_detection(root, ShapesDetConfig(images=40, size=100, classes=2), "yolo", seed=0)


def test_facts_come_from_the_annotations(folder):
    facts = data_facts(load_config(TrainConfig, ["task=detection", f"data={folder}"]).data)
    scenes = generate_scenes(ShapesDetConfig(images=40, size=100, classes=2), seed=0)
    assert (facts.images, facts.classes, facts.size) == (28, 2, (100, 100))
    assert 0.5 < facts.objects <= 4 and 0.05 < facts.object_size < 0.6
    mean_objects = sum(len(b) for b in scenes.boxes) / len(scenes.boxes)
    assert abs(facts.objects - mean_objects) < 0.6      # the 28 training scenes vs all 40


def test_the_data_size_is_never_shrunk(folder):
    cfg, line = resolved(f"data={folder}")
    assert cfg.model.name == DETECTOR and cfg.model.input_shape == (128, 128, 3)   # 100 px -> up to x32
    assert cfg.model.options == {"backbone": "resnet18", "width": 0.25}
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.optimizer) == (16, 0.01, 0.0005, "adamw")
    assert cfg.augment.preset == "light" and cfg.early_stopping.patience == 0
    assert line.startswith("recipe: detection (28 training images of ~100x100 px, 2 classes")
    assert "at 128x128x3" in line and "epochs=50" in line and "\n" not in line
    # an explicit detector keeps the data's size too; the user's input_shape wins over both
    cfg, line = resolved(f"data={folder}", "model=ssd")
    assert cfg.model.input_shape == (128, 128, 3) and "the data's size" in line
    cfg, line = resolved(f"data={folder}", "model=ssd", "model.input_shape=64,64,3")
    assert cfg.model.input_shape == (64, 64, 3) and line is None


def test_epochs_give_small_folders_enough_steps():
    rule = pick(DetFacts(200, 3, (128, 128), 2.0, 0.3))
    steps = {n: epochs_for(DetFacts(n, 3, (128, 128), 2.0, 0.3), rule, 8) * -(-n // 8)
             for n in (100, 200, 400, 1050)}
    assert epochs_for(DetFacts(200, 3, (128, 128), 2.0, 0.3), rule, 8) == 48
    assert epochs_for(DetFacts(1050, 3, (128, 128), 2.0, 0.3), rule, 8) == 12   # the main job's 12
    assert epochs_for(DetFacts(20, 3, (128, 128), 2.0, 0.3), rule, 8) == 50     # capped
    assert all(s >= 1200 for n, s in steps.items() if n >= 200)


def test_keys_the_user_sets_win(folder):
    cfg, line = resolved(f"data={folder}", "epochs=3", "batch_size=4", "model.width=0.5", "augment=ssd",
                         "lr=0.01")
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (3, 4, 0.01)
    assert cfg.model.options == {"backbone": "resnet18", "width": 0.5} and cfg.augment.preset == "ssd"
    assert cfg.weight_decay == 0.0005 and "epochs=3" in line


def test_default_command_trains_with_the_printed_recipe(tmp_path, capsys):
    from pipeline.train import train

    small = write_detection(tmp_path / "data", ShapesDetConfig(images=16, size=64, classes=2), "yolo", seed=0)
    result = train(load_config(TrainConfig, ["task=detection", f"data={small}", "epochs=1",
                                             "model.backbone=lenet_bn", "model.channels=16",
                                             f"out={tmp_path / 'run'}", "verbose=2"]))
    out = capsys.readouterr().out
    assert out.startswith("recipe: detection (")
    assert result.metrics["input_shape"] == [64, 64, 3] and result.metrics["model"] == DETECTOR
