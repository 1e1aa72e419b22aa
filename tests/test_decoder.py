"""The one box decoder (models.decoder): hand-computed cases for the graph, and its numpy twin
(serving's .keras path) equal to it on a real detector's anchors."""
from __future__ import annotations

import numpy as np
import pytest

from models.decoder import DetectionSettings, decode_numpy, detect_graph, detect_numpy
from serving.nms import nms

ANCHORS = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32)


def _settings(anchors: np.ndarray, **nms_settings) -> DetectionSettings:
    spec = {"feature_maps": [], "sizes": [], "ratios": [1.0], "aspect": 1.0}
    return DetectionSettings(anchor_spec=spec, variances=(0.1, 0.2),
                             score_threshold=nms_settings.get("score", 0.05),
                             iou_threshold=nms_settings.get("iou", 0.45),
                             max_detections=nms_settings.get("k", 5),
                             pre_nms_topk=nms_settings.get("topk"), num_anchors=len(anchors),
                             stored_anchors=tuple(map(tuple, anchors.tolist())))


def _raw(probs: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """(A, 4 + C + 1) raw outputs whose softmax is `probs` (background first)."""
    offsets = np.zeros((len(probs), 4), np.float32) if offsets is None else offsets
    return np.concatenate([offsets, np.log(np.maximum(probs, 1e-9))], 1).astype(np.float32)


def _graph(raw: np.ndarray, s: DetectionSettings) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(t) for t in detect_graph(raw, s))


def test_same_class_overlap_is_suppressed_and_the_best_box_kept():
    # anchors 0 and 1 overlap at IoU 0.905, both class 0: the 0.9 box wins; anchor 2 is class 1
    raw = _raw(np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.3, 0.0, 0.7]], np.float32))
    boxes, scores, classes, count = _graph(raw, _settings(ANCHORS))
    assert int(count) == 2
    np.testing.assert_allclose(scores[:2], [0.9, 0.7], atol=1e-6)
    np.testing.assert_array_equal(classes[:2], [0, 1])
    np.testing.assert_allclose(boxes[0], ANCHORS[0], atol=1e-6)   # zero offsets: the anchor itself
    assert not boxes[2:].any() and not scores[2:].any()            # padding rows are zero


def test_nms_is_per_class_and_one_class_per_anchor():
    # the same two overlapping anchors, now of different classes: both kept (per-class NMS);
    # anchor 0 is 0.5 class 0 / 0.4 class 1: only its best class becomes a box
    raw = _raw(np.array([[0.1, 0.5, 0.4], [0.2, 0.0, 0.8], [1.0, 0.0, 0.0]], np.float32))
    boxes, scores, classes, count = _graph(raw, _settings(ANCHORS))
    assert int(count) == 2
    np.testing.assert_allclose(scores[:2], [0.8, 0.5], atol=1e-6)
    np.testing.assert_array_equal(classes[:2], [1, 0])


def test_offsets_decode_like_ssd_eq2_and_clip():
    # anchor 0: centre (0.3, 0.3), size 0.4; offsets (1, 0, log(2)/0.2, 0) with variances (0.1, 0.2)
    # -> centre x 0.3 + 1 * 0.1 * 0.4 = 0.34, width 0.4 * 2 = 0.8 -> x0 -0.06 clipped to 0, x1 0.74
    offsets = np.array([[1.0, 0.0, np.log(2) / 0.2, 0.0], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    raw = _raw(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32), offsets)
    boxes, _, _, count = _graph(raw, _settings(ANCHORS))
    assert int(count) == 1
    np.testing.assert_allclose(boxes[0], [0.0, 0.1, 0.74, 0.5], atol=1e-6)
    np_boxes, _, _ = decode_numpy(raw, ANCHORS, _settings(ANCHORS))
    np.testing.assert_allclose(np_boxes[0], [0.0, 0.1, 0.74, 0.5], atol=1e-6)


def test_score_threshold_is_strict_and_k_caps_the_count():
    probs = np.array([[0.5, 0.5, 0.0], [0.3, 0.7, 0.0], [0.1, 0.0, 0.9]], np.float32)
    _, scores, _, count = _graph(_raw(probs), _settings(ANCHORS, score=0.5, iou=1.0))
    assert int(count) == 2 and scores[0] == pytest.approx(0.9)       # 0.5 is not > 0.5
    _, _, _, count = _graph(_raw(probs), _settings(ANCHORS, score=0.0, iou=1.0, k=1))
    assert int(count) == 1


@pytest.fixture(scope="module")
def tiny_contract():
    from models import create_detector, get_contract

    model = create_detector("ssd", backbone="resnet18", width=0.25, num_classes=3, input_shape=(64, 64, 3))
    return get_contract(model)


@pytest.mark.parametrize("topk", [None, 50])
def test_numpy_twin_equals_the_graph(tiny_contract, topk):
    """serving's .keras decoding (numpy + ONNX Runtime NMS) gives what the files' graph gives."""
    base = tiny_contract.detection
    s = DetectionSettings(**{**base.__dict__, "pre_nms_topk": topk})
    anchors = s.anchors()
    rng = np.random.default_rng(0)
    for _ in range(5):
        raw = rng.normal(0, 1.5, (len(anchors), 4 + 3 + 1)).astype(np.float32)
        raw[:, 4] += 2.0   # mostly background, as a trained detector
        g_boxes, g_scores, g_classes, g_count = _graph(raw, s)
        n_boxes, n_scores, n_classes, n_count = detect_numpy(raw, s, nms, anchors)
        assert int(g_count) == n_count > 0
        np.testing.assert_array_equal(g_classes, n_classes)
        np.testing.assert_allclose(g_scores, n_scores, atol=1e-6)
        np.testing.assert_allclose(g_boxes, n_boxes, atol=1e-5)


def test_contract_gives_typed_settings(tiny_contract):
    s = tiny_contract.detection
    assert (s.score_threshold, s.iou_threshold, s.max_detections) == (0.05, 0.45, 100)
    assert s.variances == (0.1, 0.2) and len(s.anchors()) == s.num_anchors
    # anchor count of this contract by hand: 64 px, strides 8/16/32 -> 8x8, 4x4, 2x2 maps, then
    # the extra stride-2 block gives 1x1; 4 anchors per pixel (2 sizes + 3 ratios - 1)
    assert s.num_anchors == (64 + 16 + 4 + 1) * 4
