"""models.boxes against hand-computed values and d2l 14.4's printed examples."""
import numpy as np
import pytest

from models import boxes as B


def test_iou_of_hand_made_boxes():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [2, 2, 3, 3], [0, 0, 2, 2], [0, 0, 2, 1]], np.float32)
    iou = B.pairwise_iou(a, b).numpy()
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 4 + 4 - 1 = 7
    np.testing.assert_allclose(iou, [[1 / 7, 0, 1, 0.5], [0, 0, 0.25, 0.5]], atol=1e-6)


def test_iou_agrees_with_keras_bounding_boxes(rng):
    import keras

    a = np.sort(rng.random((6, 4)).reshape(6, 2, 2), axis=1).transpose(0, 2, 1).reshape(6, 4)
    a = a[:, [0, 2, 1, 3]].astype(np.float32)    # x0 <= x1, y0 <= y1
    ref = keras.ops.convert_to_numpy(keras.utils.bounding_boxes.compute_iou(a, a[::-1], "xyxy"))
    np.testing.assert_allclose(B.pairwise_iou(a, a[::-1]).numpy(), ref, atol=1e-5)


def test_format_round_trip():
    corners = np.array([[0.1, 0.2, 0.5, 0.9]], np.float32)
    centre = B.corners_to_center(corners).numpy()
    np.testing.assert_allclose(centre, [[0.3, 0.55, 0.4, 0.7]], atol=1e-6)
    np.testing.assert_allclose(B.center_to_corners(centre).numpy(), corners, atol=1e-6)


def test_multibox_prior_matches_d2l_example():
    # d2l 14.4.1: a 561 x 728 image, sizes 0.75, 0.5, 0.25, ratios 1, 2, 0.5
    h, w = 561, 728
    anchors = B.multibox_prior(h, w, sizes=[0.75, 0.5, 0.25], ratios=[1, 2, 0.5], aspect=h / w)
    assert B.anchors_per_pixel([0.75, 0.5, 0.25], [1, 2, 0.5]) == 5
    assert anchors.shape == (h * w * 5, 4) == (2042040, 4)
    first = anchors.reshape(h, w, 5, 4)[250, 250, 0]
    np.testing.assert_allclose(first, [0.06, 0.07, 0.63, 0.82], atol=0.006)   # as printed in d2l


def test_multibox_prior_centres_and_sizes():
    # 2 x 2 map, sizes (0.5, 0.25), ratios (1, 4): 3 anchors per pixel
    a = B.multibox_prior(2, 2, sizes=[0.5, 0.25], ratios=[1, 4]).reshape(2, 2, 3, 4)
    c = B.corners_to_center(a).numpy()
    np.testing.assert_allclose(c[0, 1, :, :2], [[0.75, 0.25]] * 3, atol=1e-6)   # pixel (row 0, col 1)
    np.testing.assert_allclose(c[1, 0, :, 2:], [[0.5, 0.5], [0.25, 0.25], [1.0, 0.25]], atol=1e-6)


def test_assign_anchors_matches_d2l_example():
    # d2l 14.4.3: dog and cat ground truth, five anchors; expected classes 0, 1, 2, 0, 2
    gt = np.array([[0.1, 0.08, 0.52, 0.92], [0.55, 0.2, 0.9, 0.88]], np.float32)
    labels = np.array([0, 1])
    anchors = np.array([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                        [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]], np.float32)
    idx = B.assign_anchors(anchors, gt, iou_threshold=0.5).numpy()
    np.testing.assert_array_equal(idx, [-1, 0, 1, -1, 1])
    target = B.multibox_target(anchors, gt, labels, iou_threshold=0.5).numpy()
    np.testing.assert_array_equal(target[:, 4], [0, 1, 2, 0, 2])
    d2l_offsets = np.array([0, 0, 0, 0, 1.40, 10.0, 2.59, 7.18, -1.20, 0.269, 1.68, -1.57,
                            0, 0, 0, 0, -0.571, -1.00, 4.17e-06, 0.626]).reshape(5, 4)
    np.testing.assert_allclose(target[:, :4], d2l_offsets, atol=0.01)


def test_assign_anchors_claims_best_anchor_below_threshold_and_ignores_padding():
    anchors = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0, 1, 1]], np.float32)
    gt = np.array([[0.6, 0.6, 0.8, 0.8], [0, 0, 0, 0]], np.float32)   # second row: padding
    # IoU of gt with anchor 1 is 0.04 / 0.25 = 0.16 < 0.5, but it is gt 0's best: claimed
    np.testing.assert_array_equal(B.assign_anchors(anchors, gt, 0.5).numpy(), [-1, 0, -1])
    empty = B.multibox_target(anchors, np.zeros((0, 4), np.float32), np.zeros(0, np.int32)).numpy()
    np.testing.assert_array_equal(empty, np.zeros((3, 5)))


def test_two_boxes_claiming_one_anchor_the_better_overlap_wins():
    anchors = np.array([[0, 0, 1, 1], [5, 5, 6, 6]], np.float32)
    gt = np.array([[0, 0, 0.5, 1], [0, 0, 0.9, 1]], np.float32)        # IoU 0.5 and 0.9 with anchor 0
    assert B.assign_anchors(anchors, gt, 0.95).numpy()[0] == 1


def test_encode_decode_round_trip(rng):
    anchors = B.multibox_prior(4, 4, [0.3, 0.2], [1, 2, 0.5])
    centre = np.concatenate([rng.uniform(0.2, 0.8, (len(anchors), 2)),
                             rng.uniform(0.05, 0.5, (len(anchors), 2))], axis=1)
    boxes = B.center_to_corners(centre.astype(np.float32)).numpy()
    offsets = B.encode_offsets(anchors, boxes)
    np.testing.assert_allclose(B.decode_offsets(anchors, offsets).numpy(), boxes, atol=1e-5)
    # a box equal to its anchor has offset 0; twice as wide: log(2) / 0.2
    same = B.encode_offsets(anchors[:1], anchors[:1]).numpy()
    np.testing.assert_allclose(same, 0, atol=1e-6)
    cx, cy, w, h = B.corners_to_center(anchors[:1]).numpy()[0]
    wide = B.center_to_corners(np.array([[cx, cy, 2 * w, h]], np.float32))
    np.testing.assert_allclose(B.encode_offsets(anchors[:1], wide).numpy(), [[0, 0, np.log(2) / 0.2, 0]],
                               atol=1e-5)


def test_ssd_sizes_follow_the_paper():
    sizes = B.ssd_sizes(5, 0.2, 0.9)
    np.testing.assert_allclose([s for s, _ in sizes], [0.2, 0.34, 0.48, 0.62, 0.76], atol=1e-6)
    np.testing.assert_allclose(sizes[0][1], np.sqrt(0.2 * 0.34), atol=1e-6)


@pytest.mark.parametrize("g", [1, 3])
def test_assign_is_vectorised_over_many_anchors(g):
    anchors = B.multibox_prior(16, 16, [0.2, 0.3], [1, 2, 0.5])
    gt = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8], [0.3, 0.6, 0.5, 0.95]][:g], np.float32)
    idx = B.assign_anchors(anchors, gt, 0.5).numpy()
    assert set(np.unique(idx[idx >= 0])) == set(range(g))
