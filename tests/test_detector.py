"""create_detector on every registered backbone (tiny inputs): builds, output shape = anchors,
contract, summary; options are checked."""
import numpy as np
import pytest

from models import anchors_of, create_detector, get_contract, list_models, load_model, save_model
from models.options import OptionError

SMALL = {"width": 0.25}


@pytest.mark.parametrize("backbone", list_models())
def test_ssd_builds_on_every_backbone(backbone):
    model = create_detector("ssd", backbone=backbone, num_classes=3, input_shape=(64, 64, 3),
                            head_channels=16, **SMALL)
    contract = get_contract(model)
    spec = contract.extra["anchor_spec"]
    anchors = anchors_of(contract)
    expected = sum(h * w * k for (h, w), k in zip(spec["feature_maps"], spec["anchors_per_pixel"]))
    assert anchors.shape == (expected, 4) == (contract.extra["num_anchors"], 4)
    assert all(k == 2 + 3 - 1 for k in spec["anchors_per_pixel"])   # n + m - 1 with n=2, m=3
    out = model.predict_on_batch(np.zeros((2, 64, 64, 3), np.float32))
    assert out.shape == (2, expected, 4 + 3 + 1) and out.dtype == np.float32
    assert contract.task == "detection" and contract.output == "logits"


def test_mobilenet_ssd_scales_and_anchor_count_at_128():
    model = create_detector("ssd", backbone="mobilenetv2", num_classes=3, input_shape=(128, 128, 3),
                            head="ssdlite", width=0.5)
    spec = get_contract(model).extra["anchor_spec"]
    assert spec["feature_maps"] == [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1]]   # strides 8..128
    assert get_contract(model).extra["num_anchors"] == (256 + 64 + 16 + 4 + 1) * 4 == 1364
    assert model.count_params() < 3_000_000
    # sizes linear in 0.1 .. 0.9 (SSD eq. 4); the first anchor of pixel (0, 0) is s1 x s1 at its centre
    np.testing.assert_allclose(spec["sizes"][0][0], 0.1)
    a0 = anchors_of(get_contract(model))[0]
    np.testing.assert_allclose(a0, [1 / 32 - 0.05, 1 / 32 - 0.05, 1 / 32 + 0.05, 1 / 32 + 0.05], atol=1e-6)


def test_detector_round_trips_through_keras_file(tmp_path):
    model = create_detector("ssd", backbone="resnet18", num_classes=2, input_shape=(64, 64, 3),
                            labels=("cat", "dog"), width=0.25, head="ssdlite")
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    path = save_model(model, tmp_path / "det.keras")
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-5)
    c = get_contract(loaded)
    assert c.labels == ("cat", "dog") and c.extra["nms"]["iou_threshold"] == 0.45
    np.testing.assert_allclose(anchors_of(c), anchors_of(get_contract(model)))
    assert c.architecture["overrides"] == {"backbone": "resnet18", "width": 0.25, "head": "ssdlite"}


@pytest.mark.parametrize("kwargs, message", [
    ({"backbone": "resnet19"}, "did you mean"),
    ({"backbone": "resnet18", "widht": 0.5}, "widht"),
    ({"head": "fpn"}, "head"),
    ({"min_scale": 0.9, "max_scale": 0.2}, "min_scale"),
    ({"sizes": ((0.2, 0.3),)}, "one tuple of sizes per scale"),
])
def test_bad_detector_options_are_one_line_errors(kwargs, message):
    with pytest.raises(OptionError, match=message):
        create_detector("ssd", num_classes=2, input_shape=(64, 64, 3), **kwargs)
    with pytest.raises(OptionError, match="unknown detector"):
        create_detector("retinanet", num_classes=2, input_shape=(64, 64, 3))


def test_models_summary_prints_anchors(capsys):
    from models.__main__ import main

    assert main(["summary", "ssd", "backbone=mobilenetv3_small", "input_shape=64,64,3",
                 "num_classes=2", "width=0.25", "head=ssdlite"]) == 0
    out = capsys.readouterr().out
    assert "anchors per image:" in out and "FLOPs" in out and "det1" in out
