"""ImageNet starting points: offline error, and loading from a local weights file (made here
from keras.applications with random weights and random BN statistics) reproduces the
application's features exactly."""
import keras
import numpy as np
import pytest

from pipeline import pretrained
from pipeline.pretrained import SOURCES, PretrainedWeightsError, create_pretrained


def randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 2.0, v.shape)])


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_local_weights_file_reproduces_application_features(name, tmp_path):
    shape = (64, 64, 3)
    keras.utils.set_random_seed(0)
    app = getattr(keras.applications, SOURCES[name].app)(include_top=False, weights=None,
                                                          input_shape=shape)
    randomize_bn(app)
    path = tmp_path / "imagenet.weights.h5"
    app.save_weights(path)
    model = create_pretrained(name, weights=str(path), num_classes=5, input_shape=shape,
                              labels=list("abcde"))
    assert model.output.shape[-1] == 5
    # create_pretrained already checked features; check again independently here
    err = pretrained.check_features(app, model, SOURCES[name], tol=1e-4)
    assert err < 1e-4


def test_offline_without_file_fails_fast_with_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "_online", lambda *a, **k: False)  # the network, not TF
    with pytest.raises(PretrainedWeightsError) as e:
        create_pretrained("resnet50", num_classes=3, input_shape=(64, 64, 3))
    msg = str(e.value)
    assert "offline" in msg and "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert str(tmp_path / "models") in msg and "\n" not in msg


def test_cached_file_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "_online", lambda *a, **k: pytest.fail("network asked"))
    app = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    cache = tmp_path / "models"
    cache.mkdir()
    app.save_weights(cache / "x.weights.h5")
    (cache / SOURCES["mobilenetv2"].weights_file(96)).symlink_to(cache / "x.weights.h5")
    assert pretrained.resolve_weights("mobilenetv2", "imagenet", 96).endswith("_96_no_top.h5")


def test_bad_requests_are_clear():
    with pytest.raises(PretrainedWeightsError, match="no ImageNet weights for lenet"):
        create_pretrained("lenet", num_classes=2, input_shape=(32, 32, 3))
    with pytest.raises(PretrainedWeightsError, match="3-channel"):
        create_pretrained("resnet50", num_classes=2, input_shape=(64, 64, 1))
    with pytest.raises(PretrainedWeightsError, match="not found"):
        create_pretrained("resnet50", weights="/nope.h5", num_classes=2, input_shape=(64, 64, 3))
