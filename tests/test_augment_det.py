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


def test_augment_preview_detection_writes_png(tmp_path):
    from pipeline.augment_preview import PreviewConfig, augment_preview
    from pipeline.config import load_config

    out = augment_preview(load_config(PreviewConfig, [
        "task=detection", "data=shapes_det", "data.shapes_det.images=8", "data.shapes_det.size=64",
        "augment=ssd", "rows=2", "cols=3", f"out={tmp_path / 'grid.png'}"]))
    assert out.stat().st_size > 5000 and (tmp_path / "grid.yaml").is_file()
