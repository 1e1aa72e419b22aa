"""The default recipe (pipeline.recipes): model=auto picks a family and its settings from the
data, prints them as one line and saves them; every key the user sets wins; model=NAME turns it
off. Real folders on disk, real training for the end-to-end case."""
from __future__ import annotations

import yaml
from PIL import Image

from pipeline.config import load_config
from pipeline.recipes import DataFacts, apply, data_facts, pick
from pipeline.train import TrainConfig, train


def folder(root, classes=3, n=8, size=(64, 48), mode="RGB"):
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(n):
            Image.new(mode, size, (40 * k + i,) * (1 if mode == "L" else 3)).save(root / f"c{k}" / f"{i}.png")
    return root


def resolved(args):
    return apply(load_config(TrainConfig, args))


def test_digits_keep_the_lenet_recipe_they_were_tuned_with():
    cfg, line = resolved(["data=digits"])
    assert cfg.model.name == "lenet_bn" and cfg.lr == 0.02 and cfg.epochs == 15
    assert line.startswith("recipe: small grey images (1797 grey training images of ~8 px, 10 classes)")
    assert cfg == load_config(TrainConfig, ["data=digits", "model=lenet_bn"])   # the old defaults exactly


def test_a_photo_folder_gets_a_resnet_recipe(tmp_path):
    facts = data_facts(load_config(TrainConfig, [f"data={folder(tmp_path / 'photos')}"]).data)
    assert facts == DataFacts("folder", 24, 3, 48, 3)
    cfg, line = resolved([f"data={tmp_path / 'photos'}"])
    model = cfg.model
    assert (model.name, model.options, model.input_shape) == ("resnet18", {"width": 0.5}, (64, 64, 3))
    assert cfg.augment.preset == "standard" and cfg.label_smoothing == 0.1
    assert cfg.early_stopping.patience == 12
    assert "resnet18 width=0.5 at 64x64x3" in line and "\n" not in line


def test_grey_small_folder_and_large_folder_rules():
    assert pick(DataFacts("folder", 5000, 10, 28, 1)).model == "lenet_bn"
    tiny = pick(DataFacts("folder", 200, 2, 25, 1))   # a few hundred 25 px grey photos: not LeNet's 15 epochs
    assert (tiny.name, tiny.model, tiny.input_side) == ("small grey folder", "vgg11", 32)
    steps = -(-140 // tiny.values["batch_size"]) * tiny.values["epochs"]   # 140 training images
    assert steps >= 600                                                   # LeNet's rule gave 45
    assert pick(DataFacts("folder", 200, 2, 25, 3)).name == "small photo set"
    assert pick(DataFacts("folder", 500, 10, 96, 1)).name == "small photo set"
    assert pick(DataFacts("folder", 20000, 100, 256, 3)).name == "photo set"
    assert pick(DataFacts("shapes", 10000, 10, 64, 3)).name == "shapes"


def test_a_tiny_grey_folder_keeps_grey_and_its_size(tmp_path):
    cfg, line = resolved([f"data={folder(tmp_path / 'grey', classes=2, n=5, size=(25, 25), mode='L')}"])
    assert cfg.model.name == "vgg11" and cfg.model.input_shape == (32, 32, 1)   # never below 25 px
    assert line.startswith("recipe: small grey folder (10 grey training images of ~25 px, 2 classes)")


def test_keys_the_user_sets_win(tmp_path):
    folder(tmp_path / "photos")
    cfg, _ = resolved([f"data={tmp_path / 'photos'}", "epochs=3", "lr=0.01", "model.width=0.25",
                       "augment.hflip=false", "model.input_shape=32,32,3"])
    assert cfg.model.name == "resnet18" and cfg.model.options == {"width": 0.25}
    assert cfg.epochs == 3 and cfg.lr == 0.01 and cfg.model.input_shape == (32, 32, 3)
    assert cfg.augment.hflip is False and cfg.augment.preset == "light"   # the user's, on TrainConfig's base
    assert cfg.weight_decay == 0.0005                                     # not set: the recipe's
    explicit, line = resolved([f"data={tmp_path / 'photos'}", "model=lenet"])
    assert line is None
    assert explicit == load_config(TrainConfig, [f"data={tmp_path / 'photos'}", "model=lenet"])


def test_python_configs_count_changed_fields_as_set(tmp_path):
    from dataclasses import replace

    from pipeline.data import DataConfig

    cfg = replace(TrainConfig(), data=DataConfig(source=str(folder(tmp_path / "p"))), epochs=2)
    out, _ = apply(cfg)
    assert out.model.name == "resnet18" and out.epochs == 2


def test_a_tiny_folder_trains_with_a_printed_and_saved_recipe(tmp_path, capsys):
    data = folder(tmp_path / "photos", classes=2, n=10, size=(40, 40))
    out = tmp_path / "run"
    result = train(load_config(TrainConfig, [f"data={data}", "epochs=1", "batch_size=8", f"out={out}",
                                             "verbose=2"]))
    assert result.metrics["epochs_run"] == 1
    assert capsys.readouterr().out.startswith("recipe: small photo set (20 colour training images of ~40 px")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["name"] == "resnet18" and saved["model"]["input_shape"] == [64, 64, 3]
    assert saved["epochs"] == 1 and saved["label_smoothing"] == 0.1
    # the resolved config reloads to the same run (re-running resumes instead of refusing)
    assert load_config(TrainConfig, [], out / "config.yaml").model.name == "resnet18"
