"""pipeline.config: YAML then key=value then validation, with clear errors."""
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest
import yaml

from models.options import OptionError
from pipeline.config import describe, load_config, save_config


@dataclass(frozen=True)
class Data:
    SHORTHAND: ClassVar[str] = "source"
    source: str = "digits"
    val_split: float = 0.1


@dataclass(frozen=True)
class Model:
    SHORTHAND: ClassVar[str] = "name"
    EXTRA: ClassVar[str] = "options"
    name: str = "lenet"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Train:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    epochs: int = 10
    optimizer: Literal["sgd", "adam"] = "sgd"
    size: tuple[int, int] = (28, 28)

    def validate(self):
        if self.epochs < 1:
            raise OptionError("epochs must be >= 1")


def test_yaml_then_overrides_then_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\ndata: shapes\nmodel: {name: resnet18, width: 0.5}\n")
    cfg = load_config(Train, ["epochs=5", "data.val_split=0.2", "size=32,32", "model.dropout=0.1"], f)
    assert cfg.epochs == 5 and cfg.data == Data("shapes", 0.2) and cfg.size == (32, 32)
    assert cfg.model == Model("resnet18", {"width": 0.5, "dropout": 0.1})


def test_shorthand_and_dotted_keys_combine():
    cfg = load_config(Train, ["data=/some/folder", "data.val_split=0.3", "model=vgg11"])
    assert cfg.data == Data("/some/folder", 0.3) and cfg.model.name == "vgg11"


@pytest.mark.parametrize("args,message", [
    (["epoch=3"], "unknown key 'epoch' (did you mean: epochs?)"),
    (["data.val_spilt=0.2"], "unknown key 'data.val_spilt' (did you mean: val_split?)"),
    (["optimizer=adan"], "optimizer: 'adan' is not one of 'sgd', 'adam' (did you mean: adam?)"),
    (["epochs=many"], "epochs: expected an integer"),
    (["epochs=0"], "epochs must be >= 1"),
    (["epochs"], "expected key=value"),
])
def test_bad_input_is_one_clear_line(args, message):
    with pytest.raises(OptionError) as e:
        load_config(Train, args)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_config_file(tmp_path):
    with pytest.raises(OptionError, match="config file not found"):
        load_config(Train, [], tmp_path / "nope.yaml")
    (tmp_path / "l.yaml").write_text("- a\n- b\n")
    with pytest.raises(OptionError, match="must be a mapping"):
        load_config(Train, [], tmp_path / "l.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(Train, ["model=resnet18", "model.width=0.25", "size=64,48"])
    path = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(Train, [], path) == cfg
    assert yaml.safe_load(path.read_text())["size"] == [64, 48]


def test_describe_lists_nested_keys():
    keys = [k for k, _, _ in describe(Train)]
    assert "data.val_split" in keys and "epochs" in keys


def test_scientific_notation_is_a_number():
    from models.options import parse_kv

    assert parse_kv(["lr=1e-3", "a=2E5", "b=-1.5e-2", "c=1e", "d=e5"]) == {
        "lr": 1e-3, "a": 2e5, "b": -1.5e-2, "c": "1e", "d": "e5"}
