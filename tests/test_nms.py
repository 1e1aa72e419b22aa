"""serving.nms: ONNX Runtime's NonMaxSuppression on serving/nms.onnx, checked on hand-computed
cases against the exported files' semantics (TensorFlow's NonMaxSuppressionV5: score > threshold
makes a candidate, IoU > threshold suppresses, at most K, best first), against TF's op itself,
and against a real exported detector (tests/demo_runs.py build_det_run)."""
from __future__ import annotations

import numpy as np
import pytest

from serving.nms import class_offset, nms

# A and B: IoU = 100 / 120 = 0.8333 (B is A stretched by 2 in y); C far away
A, B, C = [0, 0, 10, 10], [0, 0, 10, 12], [50, 50, 60, 60]


def test_iou_just_above_the_threshold_suppresses_just_below_keeps():
    boxes, scores = np.array([A, B, C], np.float32), np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, iou_threshold=0.83).tolist() == [0, 2]        # 0.8333 > 0.83
    assert nms(boxes, scores, iou_threshold=0.84).tolist() == [0, 1, 2]     # 0.8333 <= 0.84


def test_ties_at_the_thresholds_behave_like_non_max_suppression_v5():
    half = np.array([[0, 0, 1, 1], [0, 0, 1, 2]], np.float32)              # IoU exactly 0.5
    assert nms(half, [0.9, 0.8], iou_threshold=0.5).tolist() == [0, 1]      # IoU == thr: kept
    assert nms(half, [0.9, 0.8], iou_threshold=0.49).tolist() == [0]
    assert nms(half, [0.9, 0.5], iou_threshold=1.0, score_threshold=0.5).tolist() == [0]   # score == thr: out
    assert nms(half, [0.9, 0.5], iou_threshold=1.0, score_threshold=0.49).tolist() == [0, 1]


def test_best_first_and_at_most_k():
    boxes = np.array([C, A, [100, 0, 110, 10]], np.float32)
    scores = np.array([0.2, 0.9, 0.5], np.float32)
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == [1, 2, 0]
    assert nms(boxes, scores, iou_threshold=0.5, max_detections=2).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), iou_threshold=0.5).tolist() == []


@pytest.mark.parametrize("scale", [1 / 64, 1.0, 400.0])      # normalized and pixel coordinates
def test_different_classes_never_suppress(scale):
    boxes = np.array([A, A, B, C], np.float32) * scale
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 1, 0, 2])
    assert nms(boxes, scores, classes, iou_threshold=0.5).tolist() == [0, 1, 3]   # B under A (same class)
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == [0, 3]               # class-blind
    assert nms(boxes, scores, np.array([0, 1, 1, 2]), iou_threshold=0.5).tolist() == [0, 1, 3]


def test_class_offset_is_the_files_constant_for_normalized_boxes():
    assert class_offset(np.array([[0.0, 0.1, 1.0, 0.9]])) == 2.0             # pipeline.tasks.detection.export
    assert class_offset(np.array([[0.0, 0.0, 640.0, 480.0]])) == 1280.0


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        nms(np.zeros((2, 4)), [0.5], iou_threshold=0.5)
    with pytest.raises(ValueError, match="iou_threshold must be in 0..1"):
        nms(np.zeros((2, 4)), [0.5, 0.4], iou_threshold=1.5)


def test_matches_tensorflow_non_max_suppression_v5_on_random_boxes():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 200))
        xy = rng.uniform(0, 0.8, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(0.02, 0.3, (n, 2))], 1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        classes = rng.integers(0, 3, n)
        iou, thr, k = float(rng.uniform(0.1, 0.9)), float(rng.uniform(0, 0.5)), int(rng.integers(1, 50))
        shifted = boxes + 2.0 * classes[:, None].astype(np.float32)
        sel, _, count = tf.raw_ops.NonMaxSuppressionV5(
            boxes=shifted, scores=scores, max_output_size=k, iou_threshold=iou, score_threshold=thr,
            soft_nms_sigma=0.0, pad_to_max_output_size=True)
        expected = sel.numpy()[: int(count)].tolist()
        got = nms(boxes, scores, classes, iou_threshold=iou, score_threshold=thr, max_detections=k)
        assert got.tolist() == expected, trial


def test_shipped_graph_is_what_the_script_builds():
    pytest.importorskip("onnx")
    from serving.nms_graph import PATH, build

    assert PATH.read_bytes() == build(), "serving/nms.onnx is stale: run python -m serving.nms_graph"


def test_shipped_graph_is_package_data():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "nms.onnx" in project["tool"]["setuptools"]["package-data"]["serving"]
# ------------------------------------------------------------------ a real exported detector


def test_keras_decoding_with_this_nms_gives_the_tflite_files_boxes(det_runs_root):
    """The decoder's numpy twin (serving.nms inside) on the .keras detector's raw output = what the exported
    fp32 file's own NON_MAX_SUPPRESSION_V5 returns, on every sample scene."""
    import serving
    from tests.demo_runs import DET_RUN, SAMPLES, scene_truth

    run = det_runs_root / DET_RUN
    keras_runner = serving.load(run / "model.keras")
    file_runner = serving.load(run / "export" / "model_fp32.tflite")
    total = 0
    for name in scene_truth():
        (k,), (f,) = keras_runner.detect([SAMPLES / name]), file_runner.detect([SAMPLES / name])
        assert f.classes.tolist() == k.classes.tolist(), name
        np.testing.assert_allclose(f.scores, k.scores, atol=1e-4)
        np.testing.assert_allclose(f.boxes, k.boxes, atol=0.05)     # pixels of a 128 px scene
        total += len(f.scores)
    assert total > 0


def test_rerunning_nms_at_the_files_own_settings_keeps_every_box(det_runs_root):
    """The file already ran NMS: doing it again with its thresholds changes nothing, a stricter
    IoU can only remove boxes (the demo's slider)."""
    import serving
    from tests.demo_runs import DET_RUN, SAMPLES, scene_truth

    runner = serving.load(det_runs_root / DET_RUN / "export" / "model_fp32.tflite")
    nms_cfg = runner.metadata["detection"]["nms"]
    for name in scene_truth():
        (d,) = runner.detect([SAMPLES / name])
        for boxes in (d.boxes, d.boxes / np.array([d.width, d.height] * 2, np.float32)):   # px, 0..1
            same = nms(boxes, d.scores, d.classes, iou_threshold=nms_cfg["iou_threshold"],
                       score_threshold=nms_cfg["score_threshold"])
            assert same.tolist() == list(range(len(d.scores))), name
        stricter = nms(d.boxes, d.scores, d.classes, iou_threshold=0.05)
        assert set(stricter.tolist()) <= set(range(len(d.scores)))
