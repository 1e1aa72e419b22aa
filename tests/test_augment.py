"""pipeline.augment: every op keeps shape and 0..255 range and really changes images; flips are
exact; presets and overrides resolve; mixup/cutmix labels stay distributions; seeded runs
repeat; augment-preview writes a PNG."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from models.options import OptionError
from pipeline.__main__ import main
from pipeline.augment import AugmentConfig, augment_batch, cutmix, mixup
from pipeline.config import load_config
from pipeline.data import DataConfig, ShapesConfig, load_dataset, make_tf_dataset
from pipeline.data.shapes import generate_shapes

SEED = tf.constant([3, 4], tf.int64)


@pytest.fixture(scope="module")
def batch():
    x, y = generate_shapes(1, size=32, classes=8, seed=0)                 # (8, 32, 32, 3)
    return tf.constant(x, tf.float32), tf.one_hot(y, 8)


def only(**kw):
    return AugmentConfig("none", **kw)


OPS = {"crop": dict(crop_scale=(0.2, 0.5)), "ratio": dict(crop_scale=(0.5, 0.5), crop_ratio=(0.5, 2.0)),
       "rotation": dict(rotation=40.0), "zoom": dict(zoom=0.4), "translate": dict(translate=0.3),
       "brightness": dict(brightness=0.5), "contrast": dict(contrast=0.5),
       "saturation": dict(saturation=0.8), "hue": dict(hue=0.3), "noise": dict(noise=30.0)}


COLOUR_ONLY = ("saturation", "hue")


@pytest.mark.parametrize("name,channels",
                         [(n, 3) for n in OPS] + [(n, 1) for n in OPS if n not in COLOUR_ONLY])
def test_each_op_keeps_shape_and_range_and_changes_images(batch, name, channels):
    x, y = batch
    if channels == 1:
        x = tf.image.rgb_to_grayscale(x)
    out, labels = augment_batch(x, y, only(**OPS[name]), SEED)
    assert out.shape == x.shape and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
    per_image = tf.reduce_mean(tf.abs(out - x), axis=[1, 2, 3]).numpy()
    assert (per_image > 1.0).sum() >= 6, per_image                        # really changed
    assert np.array_equal(labels.numpy(), y.numpy())                      # labels untouched


def test_preset_none_is_exact_identity_and_flips_are_exact(batch):
    x, y = batch
    out, _ = augment_batch(x, y, only(), SEED)
    assert np.array_equal(out.numpy(), x.numpy())
    for key, axis in (("hflip", 2), ("vflip", 1)):
        out = augment_batch(x, y, only(**{key: True}), SEED)[0].numpy()
        flipped = np.flip(x.numpy(), axis=axis)
        same = [np.array_equal(o, a) for o, a in zip(out, x.numpy())]
        flip = [np.array_equal(o, f) for o, f in zip(out, flipped)]
        assert all(s or f for s, f in zip(same, flip)) and any(flip) and any(same), (same, flip)


def test_geometry_keeps_a_centred_patch_centred_and_scales_it():
    img = np.zeros((1, 33, 33, 1), np.float32)
    img[0, 14:19, 14:19] = 255                                            # 5x5 patch at the centre (16, 16)
    x, y = tf.constant(np.repeat(img, 8, 0)), tf.ones([8, 1])
    for cfg, lo, hi in ((only(rotation=90.0, fill="constant"), 0.7, 1.3),
                        (only(zoom=0.5, fill="constant"), 0.2, 2.3),
                        (only(hflip=True, vflip=True), 1.0, 1.0)):
        out = augment_batch(x, y, cfg, SEED)[0].numpy()[..., 0]
        for o in out:
            on = np.argwhere(o > 127)
            assert np.allclose(on.mean(0), 16, atol=0.6), cfg               # rotates/zooms about the centre
            assert lo <= len(on) / 25 <= hi, (cfg, len(on))
    shifted = augment_batch(x, y, only(translate=0.2, fill="constant"), SEED)[0].numpy()[..., 0]
    centres = np.array([np.argwhere(o > 127).mean(0) for o in shifted])
    assert np.abs(centres - 16).max() > 1 and np.abs(centres - 16).max() <= 0.2 * 33 + 0.6
    assert np.allclose((shifted > 127).sum((1, 2)), 25, atol=6)            # moved whole


def test_seeded_runs_repeat_and_seeds_differ(batch):
    x, y = batch
    cfg = AugmentConfig("strong")
    a = augment_batch(x, y, cfg, SEED)
    b = augment_batch(x, y, cfg, SEED)
    c = augment_batch(x, y, cfg, tf.constant([3, 5], tf.int64))
    assert np.array_equal(a[0].numpy(), b[0].numpy()) and np.array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())


@pytest.mark.parametrize("mix", [mixup, cutmix])
def test_mixup_and_cutmix_labels_are_distributions(batch, mix):
    x, y = batch
    out, labels = mix(x, y, 1.0, SEED)
    lab = labels.numpy()
    assert out.shape == x.shape and np.allclose(lab.sum(1), 1.0, atol=1e-5) and (lab >= 0).all()
    assert ((lab > 0.01) & (lab < 0.99)).any()                            # some images really mixed
    if mix is cutmix:   # label weight of the partner = share of pixels taken from it
        for i in range(len(lab)):
            own = y.numpy()[i].argmax()
            kept = np.all(out.numpy()[i] == x.numpy()[i], axis=-1).mean()
            assert lab[i, own] == pytest.approx(kept, abs=0.02) or (lab[i] == y.numpy()[i]).all()


def test_presets_overrides_and_bad_values():
    cfg = load_config(AugmentConfig, ["preset=strong", "rotation=5", "mixup=0"])
    assert cfg.rotation == 5 and cfg.mixup == 0 and cfg.cutmix == 1.0 and cfg.vflip
    assert load_config(AugmentConfig, {"__shorthand__": "none"}).active is False
    assert AugmentConfig().preset == "standard" and AugmentConfig().hflip is True
    for args, msg in ((["hue=0.7"], "augment.hue must be in 0..0.5"),
                      (["crop_scale=0.9,0.2"], "augment.crop_scale must be two numbers"),
                      (["preset=wild"], "'wild' is not one of")):
        with pytest.raises(OptionError, match=msg):
            load_config(AugmentConfig, args)


def test_augmented_tf_dataset_is_seeded_and_new_each_epoch():
    cfg = DataConfig("shapes", shapes=ShapesConfig(per_class=4, size=32, classes=4),
                     val_split=0, test_split=0)
    ds = load_dataset(cfg, image_size=(32, 32), channels=3)

    def epochs(seed):
        d = make_tf_dataset(ds.train, image_size=(32, 32), channels=3, num_classes=4, batch_size=8,
                            training=True, augment=AugmentConfig("strong"), seed=seed)
        return [next(iter(d)) for _ in range(2)]

    a, b, c = epochs(0), epochs(0), epochs(1)
    assert np.array_equal(a[0][0].numpy(), b[0][0].numpy())
    assert np.array_equal(a[1][1].numpy(), b[1][1].numpy())
    assert not np.array_equal(a[0][0].numpy(), a[1][0].numpy())           # a new epoch, new draws
    assert not np.array_equal(a[0][0].numpy(), c[0][0].numpy())
    x, y = a[0]
    assert x.shape == (8, 32, 32, 3) and np.allclose(y.numpy().sum(1), 1, atol=1e-5)
    assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255


def test_augment_preview_writes_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    rc = main(["augment-preview", "data=shapes", "data.shapes.per_class=2", "data.shapes.size=32",
               f"out={out}", "rows=3", "cols=2", "augment=strong"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 200
    assert "preset: strong" in (tmp_path / "grid.yaml").read_text()
    assert main(["augment-preview", "augment.rotaton=3"]) == 2
    assert "did you mean: rotation" in capsys.readouterr().err


def test_noise_is_unit_gaussian_like():
    from pipeline.augment import gaussian_noise

    z = gaussian_noise([200_000], tf.constant([1, 2], tf.int64)).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    # Irwin-Hall n=4 is a little flatter than a Gaussian: 66.9% within 1 sd (Gaussian 68.3%)
    assert abs((np.abs(z) < 1).mean() - 0.683) < 0.02 and abs((np.abs(z) < 2).mean() - 0.954) < 0.02


def test_saved_augment_config_round_trips(tmp_path):
    from pipeline.config import save_config

    cfg = load_config(AugmentConfig, ["preset=light", "noise=4", "crop_scale=0.5,1"])
    assert load_config(AugmentConfig, [], save_config(cfg, tmp_path / "a.yaml")) == cfg
