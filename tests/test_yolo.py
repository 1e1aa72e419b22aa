"""The YOLO detector (models.yolo): anchor points per cell and strides with known values, the
ltrb + DFL decoding of the one decoder, CIoU of hand-made boxes, the task-aligned assigner on a
hand-made case, a tiny detector whose loss falls, and its export (builtin ops only, the files
detect what Keras detects, the detection gate)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from margins import at_most, seed

from models import create_detector, get_contract
from models.decoder import DetectionSettings, decode_numpy, detect_graph, detect_numpy
from models.options import OptionError

SIZE = 64


def _yolo(**kw):
    opts = {"backbone": "resnet18", "width": 0.25, "channels": 16, "head_convs": 1, **kw}
    return create_detector("yolo", num_classes=3, input_shape=(SIZE, SIZE, 3),
                           labels=["circle", "square", "triangle"], **opts)


@pytest.fixture(scope="module")
def yolo():
    import keras

    keras.utils.set_random_seed(0)
    return _yolo()


def _points(settings):
    a = settings.anchors()
    return (a[:, :2] + a[:, 2:]) / 2, a[:, 2:] - a[:, :2]     # centres, sides (normalised)


# ------------------------------------------------------------------ the grid of anchor points


def test_one_anchor_point_per_cell_on_strides_8_16_32(yolo):
    c = get_contract(yolo).detection
    assert c.encoding == "ltrb_dfl" and c.reg_max == 8
    assert c.anchor_spec["strides"] == [8, 16, 32]
    assert c.anchor_spec["feature_maps"] == [[8, 8], [4, 4], [2, 2]]
    assert c.num_anchors == 8 * 8 + 4 * 4 + 2 * 2 == 84
    assert yolo.output.shape[1:] == (84, 4 * 8 + 3)
    centres, sides = _points(c)
    px = centres * SIZE
    np.testing.assert_allclose(px[0], [4, 4])          # first cell of the stride-8 grid
    np.testing.assert_allclose(px[1], [12, 4])         # row-major: x moves first
    np.testing.assert_allclose(px[63], [60, 60])       # last stride-8 cell
    np.testing.assert_allclose(px[64], [8, 8])         # first stride-16 cell
    np.testing.assert_allclose(px[80], [16, 16])       # first stride-32 cell
    np.testing.assert_allclose(px[83], [48, 48])
    # the anchor box of a cell is the multibox_prior square of side = stride
    np.testing.assert_allclose(sides[:64] * SIZE, 8)
    np.testing.assert_allclose(sides[64:80] * SIZE, 16)
    np.testing.assert_allclose(sides[80:] * SIZE, 32)


def test_yolo_options_are_checked_and_ssd_is_unchanged():
    with pytest.raises(OptionError, match="reg_max"):
        _yolo(reg_max=1)
    with pytest.raises(OptionError, match="did you mean|unknown"):
        _yolo(chanels=16)
    ssd = create_detector("ssd", backbone="resnet18", num_classes=3, input_shape=(SIZE, SIZE, 3), width=0.25)
    assert get_contract(ssd).detection.encoding == "center_offsets"
    assert ssd.output.shape[-1] == 4 + 3 + 1


def test_models_summary_prints_cells_per_scale(capsys):
    from models.__main__ import main

    assert main(["summary", "yolo", "backbone=resnet18", "width=0.25", "input_shape=64,64,3",
                 "num_classes=3"]) == 0
    out = capsys.readouterr().out
    assert "84 anchor points" in out and "8x8 (stride 8), 4x4 (stride 16), 2x2 (stride 32)" in out
    assert "FLOPs" in out and "trainable parameters" in out


# ------------------------------------------------------------------ the one decoder: ltrb + DFL


def _settings(c: DetectionSettings, **kw) -> DetectionSettings:
    import dataclasses

    return dataclasses.replace(c, **kw)


def test_dfl_distances_decode_to_hand_computed_boxes(yolo):
    c = _settings(get_contract(yolo).detection, score_threshold=0.2, max_detections=5)
    raw = np.full((84, 4 * 8 + 3), -20.0, np.float32)
    # cell 18 (x 20, y 20 px at stride 8): left 1, top 2 bins exactly; right half-way 2..3 -> 2.5,
    # bottom 0; class 2 with logit 0 -> score 0.5
    bins = np.full((4, 8), -50.0, np.float32)
    bins[0, 1] = bins[1, 2] = bins[3, 0] = 0.0
    bins[2, 2] = bins[2, 3] = 0.0
    raw[18, :32] = bins.reshape(-1)
    raw[18, 32 + 2] = 0.0
    boxes, scores, classes, count = (np.asarray(t) for t in detect_graph(raw, c))
    assert int(count) == 1 and classes[0] == 2
    np.testing.assert_allclose(scores[0], 0.5, atol=1e-6)
    np.testing.assert_allclose(boxes[0] * SIZE, [20 - 8, 20 - 16, 20 + 20, 20 + 0], atol=1e-4)
    # the numpy twin (serving's .keras path) agrees
    nb, ns, nc, n = detect_numpy(raw, c, _nms())
    assert n == 1 and nc[0] == 2
    np.testing.assert_allclose(nb[0], boxes[0], atol=1e-6)
    np.testing.assert_allclose(ns[0], scores[0], atol=1e-6)


def _nms():
    from serving.nms import nms

    return nms


def test_numpy_twin_equals_the_graph_on_random_outputs(yolo):
    c = get_contract(yolo).detection
    raw = np.random.default_rng(0).normal(0, 2, (84, 35)).astype(np.float32)
    g = decode_numpy(raw, c.anchors(), c)
    gb, gs, gc, gn = (np.asarray(t) for t in detect_graph(raw, c))
    nb, ns, nc, n = detect_numpy(raw, c, _nms())
    assert n == int(gn) > 0
    np.testing.assert_allclose(nb, gb, atol=1e-5)
    np.testing.assert_allclose(ns, gs, atol=1e-6)
    np.testing.assert_array_equal(nc, gc)
    assert g[0].shape == (84, 4)


# ------------------------------------------------------------------ CIoU


def test_ciou_of_hand_made_boxes():
    from models.boxes import ciou

    a = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]], np.float32)
    b = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [0, 0, 4, 2]], np.float32)
    got = ciou(a, b).numpy()
    # equal boxes: 1. Shifted by 1: IoU 2/6, centres 1 apart, enclosing 3 x 2 (c^2 = 13), same
    # aspect (v = 0). Twice as wide: IoU 4/8, centres 1 apart, enclosing 4 x 2 (c^2 = 20),
    # v = 4/pi^2 (atan 2 - atan 1)^2, alpha = v / (1 - IoU + v)
    v = 4 / math.pi ** 2 * (math.atan(2) - math.atan(1)) ** 2
    expected = [1.0, 1 / 3 - 1 / 13, 0.5 - 1 / 20 - v / (0.5 + v) * v]
    np.testing.assert_allclose(got, expected, atol=1e-6)


# ------------------------------------------------------------------ the task-aligned assigner


def _assign(gt_px, pred_px=None, topk=10, radius=0.0, score=0.5, c=None):
    import tensorflow as tf

    from models.boxes import task_aligned_assign

    c = c or _points_settings()
    centres, sides = _points(c)
    a = len(centres)
    if pred_px is None:   # each cell predicts a 24 px square on its centre
        pred = np.concatenate([centres - 12 / SIZE, centres + 12 / SIZE], 1)
    else:
        pred = np.asarray(pred_px, np.float32) / SIZE
    gt = np.asarray(gt_px, np.float32)[None] / SIZE
    labels = np.zeros((1, len(gt_px)), np.int32)
    scores = np.full((1, a, 3), score, np.float32)
    tb, ts, fg = task_aligned_assign(tf.constant(scores), tf.constant(pred[None]), tf.constant(centres),
                                     tf.constant(sides), tf.constant(gt), tf.constant(labels), topk=topk,
                                     radius=radius)
    return tb.numpy()[0] * SIZE, ts.numpy()[0], fg.numpy()[0], centres * SIZE


_CACHE: dict = {}


def _points_settings():
    if "c" not in _CACHE:
        _CACHE["c"] = get_contract(_yolo()).detection
    return _CACHE["c"]


def _cells(fg, centres):
    return sorted((int(round(x)), int(round(y))) for x, y in centres[fg])


def test_assigner_claims_the_cells_whose_centres_lie_in_the_box():
    # a 24 px box 16..40: stride-8 centres 20, 28, 36 on each axis (9 cells), the stride-16 centre
    # 24 (1 cell); no stride-32 centre (16, 48) lies strictly inside
    tb, ts, fg, centres = _assign([[16, 16, 40, 40]], topk=10)
    assert fg.sum() == 10
    cells = _cells(fg, centres)
    assert cells.count((24, 24)) == 1 and (28, 28) in cells and (20, 36) in cells
    np.testing.assert_allclose(tb[fg], [[16, 16, 40, 40]] * 10, atol=1e-4)
    # the best-aligned cell (its 24 px prediction is the box: IoU 1) aims at 1, the others lower
    best = np.flatnonzero(fg)[np.argmax(ts[fg, 0])]
    np.testing.assert_allclose(centres[best], [28, 28])
    np.testing.assert_allclose(ts[best], [1, 0, 0], atol=1e-6)
    assert (ts[fg, 0] < 1).sum() == 9 and (ts[~fg] == 0).all()


def test_assigner_keeps_the_top_k_cells_by_alignment():
    tb, ts, fg, centres = _assign([[16, 16, 40, 40]], topk=1)
    assert _cells(fg, centres) == [(28, 28)]                         # IoU 1: the highest alignment
    _, _, fg3, _ = _assign([[16, 16, 40, 40]], topk=3)
    assert fg3.sum() == 3 and (28, 28) in _cells(fg3, centres)


def test_a_tiny_box_gets_cells_through_the_centre_radius():
    # a 4 px box 28..32 holds no cell centre strictly inside: nothing without the radius
    _, _, fg, centres = _assign([[28, 28, 32, 32]], radius=0.0)
    assert fg.sum() == 0
    # widened to one cell per axis at each scale: the nearest centre of each grid, one per scale
    _, _, fg, centres = _assign([[28, 28, 32, 32]], radius=1.0)
    assert _cells(fg, centres) == [(16, 16), (24, 24), (28, 28)]


def test_a_cell_claimed_by_two_boxes_goes_to_the_better_overlap():
    # two boxes over the stride-8 cell at (28, 28), whose prediction is the box 20..36: box A
    # 16..36 overlaps it at IoU 256/400, box B 24..44 at 144/400
    c = _points_settings()
    centres, _ = _points(c)
    pred = np.tile([[0, 0, 1, 1]], (len(centres), 1)).astype(np.float32) * 0
    shared = int(np.flatnonzero(np.all(np.isclose(centres * SIZE, [28, 28]), 1))[0])
    pred[shared] = [20, 20, 36, 36]
    tb, ts, fg, _ = _assign([[16, 16, 36, 36], [24, 24, 44, 44]], pred_px=pred, topk=10)
    assert fg[shared]
    np.testing.assert_allclose(tb[shared], [16, 16, 36, 36], atol=1e-4)


# ------------------------------------------------------------------ training


def test_a_tiny_yolo_loss_falls_on_one_batch():
    import keras
    import tensorflow as tf

    from pipeline.tasks.detection.config import DetectionConfig
    from pipeline.tasks.detection.train import make_loss

    keras.utils.set_random_seed(seed(1))
    model = _yolo()
    c = get_contract(model).detection
    loss_fn = make_loss(DetectionConfig(), 3, c)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    y = np.zeros((4, 2, 5), np.float32)
    y[..., 4] = -1
    for i in range(4):   # one bright square per image, class i % 3
        x0, y0 = rng.integers(4, 30, 2)
        x[i, y0:y0 + 24, x0:x0 + 24] = 255.0
        y[i, 0] = [x0 / SIZE, y0 / SIZE, (x0 + 24) / SIZE, (y0 + 24) / SIZE, i % 3]
    opt = keras.optimizers.Adam(3e-3)
    losses = []
    for _ in range(12):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(tf.constant(y), model(x, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    # measured 0.35-0.48 over seeds 0-1 x native/AVX2 (bench/test_margins.py): 0.8 keeps 2x that spread
    at_most("tiny yolo loss after/before 12 steps", losses[-1] / losses[0], 0.8)


def test_yolo_targets_are_the_padded_ground_truth():
    from pipeline.tasks.detection.splits import DetSplit
    from pipeline.tasks.detection.train import make_dataset

    images = np.zeros((3, SIZE, SIZE, 3), np.uint8)
    boxes = [np.array([[0.1, 0.1, 0.5, 0.5]], np.float32), np.zeros((0, 4), np.float32),
             np.array([[0.2, 0.2, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]], np.float32)]
    labels = [np.array([2]), np.zeros(0, np.int64), np.array([0, 1])]
    split = DetSplit(images, boxes, [lab.astype(np.int32) for lab in labels])
    x, y = next(iter(make_dataset(split, None, batch_size=3, training=False, augment=None, seed=0,
                                  match_iou=0.5, max_objects=0)))
    assert x.shape == (3, SIZE, SIZE, 3) and y.shape == (3, 2, 5)
    np.testing.assert_allclose(y[0].numpy(), [[0.1, 0.1, 0.5, 0.5, 2], [0, 0, 0, 0, -1]], atol=1e-6)
    np.testing.assert_allclose(y[1, :, 4].numpy(), [-1, -1])


# ------------------------------------------------------------------ export


@pytest.fixture(scope="module")
def yolo_files(tmp_path_factory):
    """A tiny yolo (random weights; prior 0.3 so that many cells pass the 0.2 score floor and
    NMS has work to do) converted to tflite_fp32, tflite_int8 and onnx by the export worker."""
    import keras

    from models import save_model
    from tests.conftest import convert_detector

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("yolo_export")
    save_model(_yolo(prior=0.3, score_threshold=0.2, max_detections=20), root / "model.keras")
    return convert_detector(root / "model.keras", root, ("tflite_fp32", "tflite_int8", "onnx"))


@pytest.mark.parametrize("fmt", ["tflite_fp32", "tflite_int8"])
def test_yolo_tflite_has_builtin_ops_only_and_nms_inside(yolo_files, fmt):
    from serving.tflite_inspect import op_names

    ops = op_names(yolo_files[fmt].read_bytes())
    assert "NON_MAX_SUPPRESSION_V5" in ops
    assert not [o for o in ops if o.startswith("CUSTOM") or "FLEX" in o], ops


def test_yolo_onnx_has_non_max_suppression(yolo_files):
    import onnx

    proto = onnx.load(str(yolo_files["onnx"]))
    assert any(n.op_type == "NonMaxSuppression" for n in proto.graph.node)


# random weights: near-tied scores that int8 may flip, so its boxes are compared by place only
@pytest.mark.parametrize("fmt,share,iou", [("tflite_fp32", 0.95, 0.9), ("onnx", 0.95, 0.9),
                                           ("tflite_int8", 0.3, 0.5)])
def test_yolo_files_detect_what_keras_detects(yolo_files, fmt, share, iou):
    import serving
    from pipeline.tasks.detection.parity import reproduced

    rng = np.random.default_rng(1)
    images = rng.integers(0, 60, (4, SIZE, SIZE, 3), dtype=np.uint8)
    for img in images:
        x0, y0 = rng.integers(0, SIZE // 2, 2)
        img[y0:y0 + 24, x0:x0 + 24] = rng.integers(100, 255, 3)
    ref = serving.load(yolo_files["keras"], manifest=None).detect_batch(images)
    got = serving.load(yolo_files[fmt], manifest=None).detect_batch(images)
    assert all(len(s) > 0 for _, s, _ in ref)
    if fmt == "tflite_int8":
        ref = [(b, s, np.zeros_like(c)) for b, s, c in ref]
        got = [(b, s, np.zeros_like(c)) for b, s, c in got]
    assert reproduced(ref, got, iou) >= share
    if fmt != "tflite_int8":
        np.testing.assert_allclose(np.sort(got[0][1]), np.sort(ref[0][1]), atol=1e-4)


@pytest.mark.parametrize("fmt", ["tflite_fp32", "tflite_int8"])
def test_classes_and_count_leave_every_file_as_whole_numbers(yolo_files, fmt):
    """classes and count are float32 (MediaPipe reads no int32 outputs) and MediaPipe truncates
    them: in an int8 file they must not pass through an int8 tensor (2 -> 1.99 -> class 1)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=yolo_files[fmt].read_bytes()).get_signature_runner()
    (name, _), = runner.get_input_details().items()
    rng = np.random.default_rng(2)
    for _ in range(3):
        out = runner(**{name: rng.integers(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)})
        for key in ("classes", "count"):
            np.testing.assert_array_equal(out[key], np.rint(out[key]), err_msg=key)
        assert out["count"][0] > 0
