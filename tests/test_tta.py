"""Test-time augmentation (serving.tta): the views are the ones the course describes, and a
runner's TTA answer is the mean of its answers on those views, for every format, in the CLI and
in the demo. Real exported files (tests/serving_models.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from serving_models import artifacts

import serving
from serving import tta
from serving.__main__ import main


@pytest.fixture(scope="module")
def art():
    return artifacts()


def test_view_counts_shapes_and_mirrors(rng):
    x = rng.integers(0, 256, (3, 16, 20, 3), dtype=np.uint8)
    for mode, n in tta.VIEWS.items():
        views = tta.views(x, mode)
        assert len(views) == n and all(v.shape == x.shape and v.dtype == np.uint8 for v in views)
    np.testing.assert_array_equal(tta.views(x, "none")[0], x)
    original, mirrored = tta.views(x, "flip")
    np.testing.assert_array_equal(mirrored[:, :, 0], x[:, :, -1])
    crops = tta.views(x, "flip_crop")
    for crop, flipped in zip(crops[::2], crops[1::2]):
        np.testing.assert_array_equal(flipped, crop[:, :, ::-1])


def test_crops_zoom_into_the_right_corner():
    """A 16x16 image whose top-left 2x2 is white: only the top-left crop (2nd view) keeps a
    white top-left corner after zooming back to 16x16; the bottom-right crop has none."""
    x = np.zeros((1, 16, 16, 1), np.uint8)
    x[0, :2, :2] = 255
    views = tta.views(x, "flip_crop")
    assert views[2][0, 0, 0, 0] == 255               # top-left crop, not mirrored
    assert views[8].max() == 0                       # bottom-right crop: the corner is cut off
    with pytest.raises(ValueError, match="did you mean: flip"):
        tta.views(x, "flp")


@pytest.mark.parametrize("name", ["model_fp32.tflite", "model_int8.tflite", "model.onnx"])
def test_tta_answer_is_the_mean_over_the_views(art, name):
    runner = serving.load(art.export / name)
    x = art.pixels[:6]
    for mode in ("flip", "flip_crop"):
        expected = np.mean([runner.predict(v) for v in tta.views(x, mode)], axis=0)
        np.testing.assert_allclose(runner.predict(x, tta=mode), expected, atol=1e-6)
        assert np.allclose(runner.predict(x, tta=mode).sum(1), 1.0, atol=0.01)   # int8 output: 1/256 steps
    sym = np.concatenate([x[:, :, :16], x[:, :, :16][:, :, ::-1]], axis=2)   # mirror-symmetric
    np.testing.assert_allclose(runner.predict(sym, tta="flip"), runner.predict(sym), atol=1e-5)


def test_cli_predict_with_tta(art, capsys):
    path = art.export / "model_fp32.tflite"
    assert main(["predict", f"model={path}", f"source={art.images[0]}", "json=true", "tta=flip_crop"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = serving.load(path).classify([art.images[0]], tta="flip_crop")[0]
    assert row["label"] == expected.label and row["score"] == pytest.approx(expected.score)
    assert main(["predict", f"model={path}", f"source={art.images[0]}", "tta=flp"]) == 2
    assert "did you mean: flip" in capsys.readouterr().err
