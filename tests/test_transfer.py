"""Fine-tuning surgery: shared-label rows copied exactly, frozen weights and BatchNorm
statistics unchanged by training, and the learning-rate multiplier really applied."""
import keras
import numpy as np
import pytest

from models import create_model
from models.options import OptionError
from pipeline.transfer import freeze, replace_head, stages, with_lr_multiplier

SRC = ["cat", "dog", "car", "tree"]
DST = ["tree", "boat", "cat"]


def source(name="resnet18"):
    keras.utils.set_random_seed(1)
    return create_model(name, num_classes=4, input_shape=(32, 32, 3), labels=SRC, width=0.125)


def batch(n=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    return x, keras.utils.to_categorical(rng.integers(0, k, n), k)


def test_shared_label_rows_are_copied_exactly():
    model = source()
    swap = replace_head(model, DST)
    assert swap.shared == ["tree", "cat"] and swap.new == ["boat"]
    k_old, b_old = model.get_layer("head_fc").get_weights()
    k_new, b_new = swap.model.get_layer("head_fc").get_weights()
    assert k_new.shape == (k_old.shape[0], 3)
    np.testing.assert_array_equal(k_new[:, 0], k_old[:, 3])   # tree
    np.testing.assert_array_equal(k_new[:, 2], k_old[:, 0])   # cat
    np.testing.assert_array_equal(b_new[[0, 2]], b_old[[3, 0]])
    assert not np.array_equal(k_new[:, 1], k_old[:, 1])       # boat is new
    for name in ("stem_conv", "stage4_block2_2_bn"):
        for a, b in zip(model.get_layer(name).get_weights(), swap.model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    # the same image gets the same logit for a shared class (same features, same row)
    x, _ = batch(2)
    feats = keras.Model(model.input, model.get_layer("head_pool").output)(x)
    feats_new = keras.Model(swap.model.input, swap.model.get_layer("head_pool").output)(x)
    np.testing.assert_allclose(np.asarray(feats), np.asarray(feats_new), atol=1e-6)
    assert swap.model.output.shape[-1] == 3


def test_nin_head_block_rows_copied_on_every_class_axis():
    model = source("nin")
    swap = replace_head(model, DST)
    old = model.get_layer("head_block_mlp1").get_weights()[0]    # (1, 1, 4, 4)
    new = swap.model.get_layer("head_block_mlp1").get_weights()[0]  # (1, 1, 3, 3)
    np.testing.assert_array_equal(new[0, 0][np.ix_([0, 2], [0, 2])], old[0, 0][np.ix_([3, 0], [3, 0])])


def test_frozen_weights_and_bn_statistics_do_not_change():
    swap = replace_head(source(), DST)
    model = swap.model
    frozen = freeze(model, "stage2")
    assert "stem_conv" in frozen and "stage2_block2_out" in frozen and "stage3_block1_1_conv" not in frozen
    before = {n: [w.copy() for w in model.get_layer(n).get_weights()] for n in frozen}
    trainable_before = model.get_layer("stage3_block1_1_bn").get_weights()
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy", jit_compile=False)
    x, y = batch(16)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for n, ws in before.items():
        for a, b in zip(ws, model.get_layer(n).get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=n)
    moving_mean_after = model.get_layer("stage3_block1_1_bn").get_weights()[2]
    assert not np.array_equal(trainable_before[2], moving_mean_after)  # unfrozen BN did update


def test_freeze_fraction_and_none_and_bad_stage():
    model = source()
    assert freeze(model, "none") == []
    half = freeze(model, 0.5)
    assert half and len(half) < len(freeze(model, 1.0))
    assert all(model.get_layer(n).trainable is False for n in half)
    with pytest.raises(OptionError, match="did you mean: stage2"):
        freeze(model, "stage22")
    assert stages(model)[:2] == ["normalize", "stem"]


@pytest.mark.parametrize("opt", [keras.optimizers.SGD(0.5), keras.optimizers.Adam(0.01)])
def test_lr_multiplier_really_applies(opt):
    """With multiplier m the backbone's step equals the step of the same optimizer at lr*m."""
    x, y = batch(8, k=4)

    def one_step(optimizer, multiplier=None):
        model = source()
        backbone = [v for layer in model.layers if not layer.name.startswith("head")
                    for v in layer.trainable_weights]
        if multiplier is not None:
            optimizer = with_lr_multiplier(optimizer, backbone, multiplier)
        model.compile(optimizer, "categorical_crossentropy", jit_compile=False)
        w0 = [v.numpy().copy() for v in model.trainable_weights]
        model.train_on_batch(x, y)
        return model, {v.path: v.numpy() - w for v, w in zip(model.trainable_weights, w0)}

    cfg = opt.get_config()
    _, mult = one_step(type(opt).from_config(cfg), 0.1)
    _, slow = one_step(type(opt).from_config({**cfg, "learning_rate": cfg["learning_rate"] * 0.1}))
    _, full = one_step(type(opt).from_config(cfg))
    np.testing.assert_allclose(mult["stem_conv/kernel"], slow["stem_conv/kernel"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(mult["head_fc/kernel"], full["head_fc/kernel"], rtol=1e-4, atol=1e-7)
    assert np.abs(mult["stem_conv/kernel"]).max() < 0.5 * np.abs(full["stem_conv/kernel"]).max()
