"""Every registered model, on tiny inputs: builds, trains (loss falls), saves/loads, has a tf_keras
twin, exposes its feature maps. Parametrized over the registry, so a new family is covered
the moment it is registered."""
import keras
import numpy as np
import pytest
import tf_keras
from margins import at_most, seed

from models import (
    UnknownModelError,
    build_twin,
    create_backbone,
    create_model,
    get_contract,
    list_models,
    load_model,
    save_model,
)
from models.options import OptionError
from models.registry import Family, register_model
from models.summary import count_params

NAMES = list_models()
TINY = dict(width=0.25, dropout=0.0)  # dropout off so losses are deterministic
SHAPE = (32, 32, 3)


def tiny(name, **kw):
    keras.utils.set_random_seed(seed())
    args = dict(num_classes=5, input_shape=SHAPE, **TINY)
    args.update(kw)
    return create_model(name, **args)


def images(n=8, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, *shape)).astype("float32")


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_probabilities(name):
    model = tiny(name)
    out = np.asarray(model(images(3), training=False))
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert get_contract(model).input_shape == SHAPE
    assert all(layer.name for layer in model.layers)
    assert len({layer.name for layer in model.layers}) == len(model.layers)


# families whose training step is slow (densenet121 70 s, mobilenetv2 32 s on 2 cores), covered in
# the quick run by the same builder: DenseNet's at a smaller configuration, the inverted residuals
# (models/mobilenet.py::inverted_residual) by mobilenetv3_small
SLOW_TRAINING = {"densenet121": "densenet_small", "mobilenetv2": "mobilenetv3_small"}
TRAIN_NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TRAINING else n for n in NAMES]
assert all(small in NAMES for small in SLOW_TRAINING.values())


@pytest.mark.parametrize("name", TRAIN_NAMES)
def test_training_lowers_loss(name):
    """Twenty Adam steps on one fixed batch must cut the loss by a clear margin. One SGD step
    (the old test) moved the loss by less than the machine's float rounding for mobilenetv2
    (1.994 -> 2.075 on one CPU, lower on another). Both losses are taken in training mode
    (batch statistics), so they depend on the weights alone, not on BatchNorm's moving averages.
    Measured ratios after/before (bench/test_margins.py, seeds x ISAs): nin 0.72 at worst, the rest
    below 0.6, down to 0.000 (vgg11). LeNet's sigmoid sits on a plateau for its first steps: 0.84,
    0.91, 0.98, 0.88 over seeds 0-3, a bar set by luck; with relu 0.55-0.70 over the same seeds,
    so lenet's builder trains here with relu (the forward test above covers sigmoid)."""
    model = tiny(name, **({"activation": "relu"} if name == "lenet" else {}))
    x = images(8)
    y = keras.utils.to_categorical(np.arange(8) % 5, 5)
    loss_fn = keras.losses.CategoricalCrossentropy()
    before = float(loss_fn(y, model(x, training=True)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss_fn, jit_compile=False)
    model.fit(x, y, batch_size=8, epochs=20, shuffle=False, verbose=0)
    after = float(loss_fn(y, model(x, training=True)))
    at_most(f"{name} loss after/before 20 Adam steps", after / before, 0.9)


@pytest.mark.parametrize("name", NAMES)
def test_keras_save_load_identical(name, tmp_path):
    model = tiny(name)
    path = save_model(model, tmp_path / "m.keras")
    loaded = load_model(path)
    x = images(2)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))
    assert get_contract(loaded) == get_contract(model)
    assert not [p for p in tmp_path.iterdir() if p.name != "m.keras"], "temp file left behind"


@pytest.mark.parametrize("name", NAMES)
def test_tf_keras_twin_agrees(name):
    model = tiny(name, input_shape=(32, 32, 1))
    twin = build_twin(model, tf_keras)
    assert [w.shape for w in twin.get_weights()] == [w.shape for w in model.get_weights()]
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    x = images(2, (32, 32, 1))
    diff = np.abs(np.asarray(model(x)) - twin(x).numpy()).max()
    assert diff < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_backbone_feature_maps_have_their_stride(name):
    backbone = create_backbone(name, input_shape=(64, 64, 3), width=0.25)
    feats = backbone(images(1, (64, 64, 3)))
    assert feats, name
    lenet = name.startswith("lenet")  # unpadded 5x5 convs trim 4 px; it stops at stride 4
    for key, fmap in feats.items():
        side = 64 // int(key.removeprefix("stride"))
        if lenet:
            assert side - 4 <= fmap.shape[1] <= side and fmap.shape[1] == fmap.shape[2], key
        else:
            assert fmap.shape[1:3] == (side, side), (key, fmap.shape)
    if not lenet:
        assert {"stride8", "stride16", "stride32"} <= set(feats)


@pytest.mark.parametrize("name,expected", [
    ("resnet18", 11_689_512), ("resnet50", 25_557_032), ("vgg16", 138_357_544),
    ("densenet121", 7_978_856), ("mobilenetv2", 3_504_872), ("mobilenetv3_small", 2_542_856),
])
def test_imagenet_parameter_counts_match_torchvision(name, expected):
    model = create_model(name, num_classes=1000, input_shape=(224, 224, 3))
    assert count_params(model.trainable_weights) == expected


@pytest.mark.parametrize("shape", [(32, 32, 1), (48, 64, 3), (224, 224, 3)])
def test_input_sizes_and_channels_scale(shape):
    model = create_model("resnet18", num_classes=7, input_shape=shape, width=0.125)
    assert model.output.shape[-1] == 7 and tuple(model.input.shape[1:]) == shape


def test_width_scales_parameters():
    small = count_params(tiny("resnet18", width=0.25).trainable_weights)
    big = count_params(tiny("resnet18", width=0.5).trainable_weights)
    assert 3 < big / small < 5  # conv parameters grow with width squared


def test_vgg_custom_block_spec():
    model = create_model("vgg11", num_classes=3, input_shape=(32, 32, 3),
                         blocks=((1, 8), (2, 16)), fc_width=32)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [8, 16, 16]
    assert model.get_layer("block2_pool").output.shape[1:3] == (8, 8)


def test_dropout_where_the_family_has_it():
    model = create_model("alexnet", num_classes=3, input_shape=SHAPE, width=0.1)
    assert [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"] == [0.5, 0.5]


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        @register_model
        def resnet18() -> Family:  # noqa: F811
            return Family()


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match="did you mean: resnet18"):
        create_model("resnet81", num_classes=2, input_shape=SHAPE)


def test_unknown_option_suggests_close_names():
    with pytest.raises(OptionError, match="did you mean: width"):
        create_model("resnet18", num_classes=2, input_shape=SHAPE, widht=0.5)


def test_bad_option_type_and_too_small_input_are_clear_errors():
    with pytest.raises(OptionError, match="width: expected a number"):
        create_model("resnet18", num_classes=2, input_shape=SHAPE, width="wide")
    with pytest.raises(OptionError, match="at least 32x32"):
        create_model("resnet18", num_classes=2, input_shape=(8, 8, 3))
