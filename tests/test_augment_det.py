"""Box-aware augmentation: the boxes follow the pixels (render, augment, the box still frames
the object), cut-off boxes are dropped, and the preview writes a grid."""
import numpy as np
import pytest
import tensorflow as tf

from models.options import OptionError
from pipeline.augment import AugmentConfig
from pipeline.tasks.detection.augment import augment_detection_batch, check_detection_augment, transform_boxes


def _scene(n=16, size=64):
    """White rectangles on black at known boxes (pixel edges), one per image, plus a padding row."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, size, size, 3), np.float32)
    boxes = np.zeros((n, 2, 4), np.float32)
    labels = np.full((n, 2), -1, np.int32)
    for i in range(n):
        w, h = rng.integers(10, 24, 2)
        x0, y0 = rng.integers(8, size - 8 - 24, 2)
        images[i, y0:y0 + h, x0:x0 + w] = 255
        boxes[i, 0], labels[i, 0] = np.array([x0, y0, x0 + w, y0 + h]) / size, i % 3
    return images, boxes, labels


def _painted_box(img):
    on = img[..., 0] > 127
    if not on.any():
        return None
    rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


@pytest.mark.parametrize("preset, extra", [
    ("ssd", {}), ("none", {"hflip": True, "vflip": True}), ("none", {"zoom_out": 3.0}),
    ("none", {"zoom": 0.3, "translate": 0.2}), ("none", {"crop_scale": (0.3, 0.6)})])
def test_box_still_frames_the_object_after_augmentation(preset, extra):
    images, boxes, labels = _scene()
    cfg = AugmentConfig(preset, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, **extra)
    checked = 0
    for seed in range(3):
        x, b, lab = augment_detection_batch(tf.constant(images), tf.constant(boxes), tf.constant(labels),
                                            cfg, tf.constant([seed, 1], tf.int64))
        x, b, lab = x.numpy(), b.numpy(), lab.numpy()
        assert (lab[:, 1] == -1).all() and (b[:, 1] == 0).all()          # padding stays padding
        for i in range(len(x)):
            painted = _painted_box(x[i])
            if lab[i, 0] < 0:      # dropped: the object left the view or was cut at the border
                assert painted is None or painted.min() <= 0 or painted.max() >= 64
                continue
            assert lab[i, 0] == labels[i, 0]
            np.testing.assert_allclose(b[i, 0] * 64, painted, atol=1.5)    # within 1.5 px
            checked += 1
    assert checked >= 20


def test_flip_moves_box_exactly():
    boxes = tf.constant([[[0.1, 0.2, 0.3, 0.5]]])
    labels = tf.constant([[1]])
    win = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    b, lab = transform_boxes(boxes, labels, win, tf.constant([True]), tf.constant([False]))
    np.testing.assert_allclose(b.numpy()[0, 0], [0.7, 0.2, 0.9, 0.5], atol=1e-6)
    # a window on the right half: the box at x 0.1..0.3 is outside -> dropped
    b, lab = transform_boxes(boxes, labels, tf.constant([[0.5, 0.0, 1.0, 1.0]]),
                             tf.constant([False]), tf.constant([False]))
    assert lab.numpy()[0, 0] == -1
    # a window cutting 40% off the box keeps it, clipped: x 0.1..0.3 in window 0.18..1
    b, lab = transform_boxes(boxes, labels, tf.constant([[0.18, 0.0, 1.0, 1.0]]),
                             tf.constant([False]), tf.constant([False]))
    assert lab.numpy()[0, 0] == 1
    np.testing.assert_allclose(b.numpy()[0, 0], [0, 0.2, 0.12 / 0.82, 0.5], atol=1e-6)


def test_unsupported_keys_are_refused():
    for key in ("rotation", "mixup", "cutmix"):
        with pytest.raises(OptionError, match=f"augment.{key}=.*task=detection"):
            check_detection_augment(AugmentConfig("none", **{key: 0.5}))


@pytest.mark.parametrize("preset", ["ssd", "yolo"])
def test_augment_preview_detection_writes_png(tmp_path, preset):
    from pipeline.augment_preview import PreviewConfig, augment_preview
    from pipeline.config import load_config

    out = augment_preview(load_config(PreviewConfig, [
        "task=detection", "data=shapes_det", "data.shapes_det.images=8", "data.shapes_det.size=64",
        f"augment={preset}", "rows=2", "cols=3", f"out={tmp_path / 'grid.png'}"]))
    assert out.stat().st_size > 5000 and (tmp_path / "grid.yaml").is_file()


# ------------------------------------------------------------------ mosaic

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]],
                   np.float32)


def _colour_scenes(n=6, size=64):
    """Image i: one solid rectangle of colour i (class i) at a known box, on black."""
    rng = np.random.default_rng(1)
    images = np.zeros((n, size, size, 3), np.float32)
    boxes = np.zeros((n, 1, 4), np.float32)
    labels = np.arange(n, dtype=np.int32)[:, None]
    for i in range(n):
        w, h = rng.integers(12, 30, 2)
        x0, y0 = rng.integers(4, size - 4 - 30, 2)
        images[i, y0:y0 + h, x0:x0 + w] = COLOURS[i]
        boxes[i, 0] = np.array([x0, y0, x0 + w, y0 + h]) / size
    return images, boxes, labels


def _components(img, colour):
    """Pixel boxes (x0, y0, x1, y1) of the connected regions painted `colour`."""
    from scipy import ndimage

    on = ((img > 127) == (colour > 127)).all(-1)
    regions, _ = ndimage.label(on)
    return [np.array([s[1].start, s[0].start, s[1].stop, s[0].stop], np.float32)
            for s in ndimage.find_objects(regions)]


@pytest.mark.parametrize("scale", [(1.0, 1.0), (0.5, 0.5), (0.5, 1.5)])
def test_mosaic_boxes_cover_exactly_the_pixels_of_their_rectangles(scale):
    """Four hand-made images on the canvas, one window: every kept box frames its rectangle's
    pixels within 1 px; a rectangle without a box was cut by the window's edge."""
    from pipeline.tasks.detection.augment import mosaic_batch

    images, boxes, labels = _colour_scenes()
    cfg = AugmentConfig("none", mosaic=1.0, mosaic_scale=scale)
    kept = 0
    for seed in range(4):
        x, b, lab = mosaic_batch(tf.constant(images), tf.constant(boxes), tf.constant(labels), cfg,
                                 tf.constant([seed, 3], tf.int64))
        x, b, lab = x.numpy(), b.numpy() * 64, lab.numpy()
        assert x.shape == images.shape and b.shape == (6, 4, 4) and lab.shape == (6, 4)
        for i in range(len(x)):
            shown = {k: _components(x[i], COLOURS[k]) for k in range(6)}
            for k in range(6):
                mine = [bb for bb, c in zip(b[i], lab[i]) if c == k]
                for bb in mine:   # each box frames one painted rectangle of its class
                    assert min(np.abs(bb - p).max() for p in shown[k]) <= 1.0, (seed, i, k, bb, shown[k])
                    kept += 1
                for p in shown[k]:   # each painted rectangle has its box, or was cut by the window
                    if not any(np.abs(bb - p).max() <= 1.0 for bb in mine):
                        assert p.min() <= 0 or p[2] >= 64 or p[3] >= 64, (seed, i, k, p)
    assert kept >= 15


def test_mosaic_window_cuts_boxes_clips_and_drops():
    """A box the window halves stays, clipped to the edge; one the window leaves with less than
    MIN_VISIBLE of its area, or thinner than MIN_SIDE px, goes."""
    from pipeline.tasks.detection.augment import MIN_SIDE, transform_boxes

    boxes = tf.constant([[[0.1, 0.1, 0.3, 0.3], [0.45, 0.1, 0.55, 0.3], [0.1, 0.45, 0.3, 0.7]]])
    labels = tf.constant([[0, 1, 2]])
    win = tf.constant([[0.0, 0.0, 0.5, 0.5]])    # the canvas's top-left quarter = one image
    no = tf.constant([False])
    b, lab = transform_boxes(boxes, labels, win, no, no, (MIN_SIDE / 64, MIN_SIDE / 64))
    b, lab = b.numpy()[0], lab.numpy()[0]
    np.testing.assert_allclose(b[0], [0.2, 0.2, 0.6, 0.6], atol=1e-6)        # inside: scaled x2
    assert lab[1] == 1 and np.allclose(b[1], [0.9, 0.2, 1.0, 0.6], atol=1e-6)  # half inside: clipped
    assert lab[2] == -1 and (b[2] == 0).all()                                # 20% inside: dropped
    thin = tf.constant([[[0.49, 0.1, 0.6, 0.3]]])                             # 0.02 of the window: 1.3 px
    _, lab = transform_boxes(thin, tf.constant([[0]]), win, no, no, (MIN_SIDE / 64, MIN_SIDE / 64))
    assert lab.numpy()[0, 0] == -1


def test_close_mosaic_switches_it_off_in_the_last_epochs():
    """MosaicPhase flips the variable the tf.data map reads: mosaic in epochs 0..6 of 10 with
    close_mosaic=3, then the images come through unchanged (augment=none otherwise)."""
    import keras

    from pipeline.callbacks import bind
    from pipeline.tasks.detection.augment import MosaicPhase

    images, boxes, labels = _colour_scenes()
    cfg = AugmentConfig("none", mosaic=1.0, close_mosaic=3)
    on = tf.Variable(True, trainable=False)
    ds = tf.data.Dataset.from_tensors((images, boxes, labels)).map(
        lambda x, b, lab: augment_detection_batch(x, b, lab, cfg, tf.constant([0, 1], tf.int64), on))
    phase = bind(keras, MosaicPhase)(on, 10, 3)
    seen = []
    for epoch in range(10):
        phase.on_epoch_begin(epoch)
        x, b, lab = next(iter(ds))
        seen.append(not np.array_equal(x.numpy(), images))
        assert b.shape == (6, 4, 4)                    # 4M rows either way: shapes stay fixed
        if not seen[-1]:
            np.testing.assert_array_equal(lab.numpy()[:, 0], labels[:, 0])
            assert (lab.numpy()[:, 1:] == -1).all()
    assert seen == [True] * 7 + [False] * 3


def test_flip_and_scale_jitter_after_mosaic_keep_boxes_on_their_pixels():
    """The yolo preset (mosaic, then flip, scale jitter and shift; HSV jitter off to read the
    colours): each box frames its rectangle within 1.5 px (two resamples)."""
    images, boxes, labels = _colour_scenes()
    cfg = AugmentConfig("yolo", brightness=0.0, saturation=0.0, hue=0.0)
    kept = 0
    for seed in range(3):
        x, b, lab = augment_detection_batch(tf.constant(images), tf.constant(boxes), tf.constant(labels),
                                            cfg, tf.constant([seed, 5], tf.int64))
        x, b, lab = x.numpy(), b.numpy() * 64, lab.numpy()
        assert b.shape == (6, 4, 4)
        for i in range(len(x)):
            for bb, k in zip(b[i], lab[i]):
                if k >= 0:
                    assert min(np.abs(bb - p).max() for p in _components(x[i], COLOURS[k])) <= 1.5
                    kept += 1
    assert kept >= 10
    x, _, _ = augment_detection_batch(tf.constant(images), tf.constant(boxes), tf.constant(labels),
                                      AugmentConfig("yolo"), tf.constant([0, 5], tf.int64))
    assert not np.array_equal(x.numpy(), images)   # with HSV jitter on too


def test_training_with_mosaic_closes_it_for_the_last_epoch(tmp_path, monkeypatch):
    """The trainer wires the switch: augment=yolo trains a tiny SSD, mosaic on in epoch 1 of 2
    and off in the last (augment.close_mosaic=1)."""
    from pipeline.config import load_config
    from pipeline.tasks import get_task
    from pipeline.train import TrainConfig, train

    seen = []
    task = get_task("detection")
    callbacks = task.epoch_callbacks

    def spy(k, data, shape):
        class Record(k.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                seen.append(bool(task._mosaic_phase[0].numpy()))
        return [*callbacks(k, data, shape), Record()]

    monkeypatch.setattr(task, "epoch_callbacks", spy)
    result = train(load_config(TrainConfig, [
        "task=detection", "data=shapes_det", "data.shapes_det.images=24", "data.shapes_det.size=64",
        "model=ssd", "model.backbone=lenet_bn", "model.head_channels=16", "batch_size=8",
        "augment=yolo", "augment.close_mosaic=1", "epochs=2", "verbose=0", f"out={tmp_path / 'run'}"]))
    assert seen == [True, False] and result.metrics["epochs_run"] == 2
