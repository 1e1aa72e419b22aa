"""`pipeline finetune` end to end on tiny data: a source run on some shapes classes, then
fine-tuning on a target set that shares two labels with it."""
import json

import numpy as np
import pytest

from models import load_model
from models.options import OptionError
from pipeline.__main__ import main
from pipeline.config import load_config
from pipeline.finetune import FinetuneConfig, finetune
from pipeline.train import TrainConfig, train

TINY = ["data.shapes.per_class=16", "data.shapes.size=32", "model=resnet18", "model.width=0.125",
        "batch_size=16", "verbose=0", "augment=none"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("source") / "run"
    cfg = load_config(TrainConfig, TINY + ["data=shapes", "data.shapes.names=circle,square,triangle,star",
                                           "epochs=2", f"out={out}"])
    train(cfg)
    return out


def target(out, *extra):
    return load_config(FinetuneConfig, [
        "data=shapes", "data.shapes.names=star,circle,hexagon", "data.shapes.per_class=16",
        "data.shapes.size=32", "batch_size=16", "verbose=0", "augment=none", f"out={out}", *extra])


def test_finetune_run_dir_and_shared_labels(source_run, tmp_path):
    result = finetune(target(tmp_path / "ft", f"from={source_run}", "epochs=2", "head_epochs=1"))
    for name in ("config.yaml", "model.keras", "metrics.json", "curves.png", "confusion_matrix.png"):
        assert (tmp_path / "ft" / name).is_file(), name
    info = json.loads((tmp_path / "ft" / "metrics.json").read_text())["finetune"]
    assert info["shared_labels"] == ["star", "circle"] and info["new_labels"] == ["hexagon"]
    assert [p["name"] for p in info["phases"]] == ["head", "fine-tune"]
    assert result.metrics["epochs_run"] == 2
    rows = (tmp_path / "ft" / "logs" / "train.csv").read_text().splitlines()
    assert len(rows) == 3   # header + one row per epoch over both phases


def test_frozen_backbone_and_bn_statistics_unchanged(source_run, tmp_path):
    finetune(target(tmp_path / "ft", f"from={source_run}", "epochs=2", "head_epochs=1", "freeze=1.0"))
    src, ft = load_model(source_run / "model.keras"), load_model(tmp_path / "ft" / "model.keras")
    for name in ("stem_conv", "stem_bn", "stage2_block1_1_bn", "stage4_block2_2_conv"):
        for a, b in zip(src.get_layer(name).get_weights(), ft.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=name)
    # target (star, circle, hexagon) rows 0-1 started as source rows 3 and 0, then trained
    assert not np.array_equal(src.get_layer("head_fc").get_weights()[1][[3, 0]],
                              ft.get_layer("head_fc").get_weights()[1][:2])


def test_cli_from_alias_and_errors(source_run, tmp_path, capsys):
    assert main(["finetune", f"from={source_run}", "data=shapes", "data.shapes.names=star,heart",
                 "data.shapes.per_class=8", "data.shapes.size=32", "epochs=2", "head_epochs=1",
                 "batch_size=8", "verbose=0", f"out={tmp_path / 'cli'}"]) == 0
    assert (tmp_path / "cli" / "model.keras").is_file()
    assert main(["finetune", "data=shapes", f"out={tmp_path / 'x'}"]) == 2
    assert "from: give a run dir" in capsys.readouterr().err
    assert main(["finetune", "form=runs/x"]) == 2
    assert "did you mean: from" in capsys.readouterr().err
    with pytest.raises(OptionError, match="weights=imagenet or weights=/path"):
        finetune(target(tmp_path / "y", "from=resnet50"))
    with pytest.raises(OptionError, match="head_epochs must be in 0..epochs-1"):
        target(tmp_path / "z", f"from={source_run}", "epochs=2", "head_epochs=2")
