"""The demo's detection path with hand-made detection results: score filter, class-aware NMS
(serving.nms), box drawing, and the Streamlit rendering (AppTest) - no detector needed."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from models.boxes import iou_numpy as box_iou
from serving.demo.detection import as_detections, detection_rows, filter_detections
from serving.demo.settings import DemoError
from serving.nms import nms
from serving.tasks.detect import PALETTE, draw_detections

LABELS = ("cat", "dog", "bird")
# two heavily overlapping cats (IoU 0.75), a dog on top of them, a weak bird, a far cat
RESULT = {
    "boxes": [[10, 10, 50, 50], [14, 12, 54, 52], [12, 10, 52, 50], [70, 70, 90, 90], [80, 5, 110, 30]],
    "scores": [0.90, 0.60, 0.80, 0.10, 0.70],
    "labels": [0, 0, 1, 2, 0],
}


def test_box_iou_known_values():
    iou = box_iou(np.array([0, 0, 10, 10.]), np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30.]]))
    np.testing.assert_allclose(iou, [50 / 150, 1.0, 0.0])


def test_score_filter_drops_weak_boxes():
    det = filter_detections(RESULT, score_threshold=0.5, iou_threshold=1.0, label_names=LABELS)
    assert 0.10 not in det["scores"].tolist()
    assert len(det["scores"]) == 4
    assert det["scores"].tolist() == sorted(det["scores"].tolist(), reverse=True)


def test_nms_removes_overlapping_lower_score_box_of_same_class():
    det = filter_detections(RESULT, score_threshold=0.5, iou_threshold=0.5, label_names=LABELS)
    kept = {(tuple(b), round(float(s), 2)) for b, s in zip(det["boxes"].tolist(), det["scores"])}
    assert ((14, 12, 54, 52), 0.6) not in kept          # the 0.60 cat under the 0.90 cat
    assert ((10, 10, 50, 50), 0.9) in kept
    assert ((12, 10, 52, 50), 0.8) in kept              # a dog: another class is never suppressed
    assert ((80, 5, 110, 30), 0.7) in kept              # a cat that does not overlap
    assert det["labels"].tolist() == [0, 1, 0]


def test_nms_keeps_both_when_overlap_is_below_threshold():
    boxes = np.array(RESULT["boxes"][:2], np.float32)
    scores = np.array([0.9, 0.6], np.float32)
    assert box_iou(boxes[0], boxes[1:])[0] == pytest.approx(1368 / 1832)   # 36*38 / (1600+1600-1368)
    assert nms(boxes, scores, iou_threshold=0.8).tolist() == [0, 1]
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == [0]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), iou_threshold=0.5).tolist() == []


def test_string_labels_are_mapped_to_ids():
    det = as_detections({"boxes": [[0, 0, 4, 4]], "scores": [0.5], "labels": ["bird"]}, LABELS)
    assert det["labels"].tolist() == [2]


@pytest.mark.parametrize("bad, message", [
    ({"boxes": [[0, 0, 4, 4]], "scores": [0.5]}, "lacks 'labels'"),
    ({"boxes": [[0, 0, 4]], "scores": [0.5], "labels": [0]}, "(N, 4)"),
    ({"boxes": [[0, 0, 4, 4]], "scores": [0.5, 0.4], "labels": [0]}, "must match"),
    ({"boxes": [[5, 0, 4, 4]], "scores": [0.5], "labels": [0]}, "x1 >= x0"),
    ({"boxes": [[0, 0, 4, 4]], "scores": [0.5], "labels": ["fish"]}, "'fish' is not one of"),
    ({"boxes": [[0, 0, 4, 4]], "scores": [0.5], "labels": [7]}, "class id 7"),
])
def test_bad_detection_results_fail_with_one_line(bad, message):
    with pytest.raises(DemoError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        as_detections(bad, LABELS)
    assert "\n" not in str(err.value)


def test_boxes_are_drawn_where_expected():
    image = Image.new("RGB", (128, 96), (0, 0, 0))
    det = as_detections({"boxes": [[20, 40, 60, 80]], "scores": [0.93], "labels": [1]}, LABELS)
    out = draw_detections(image, det, LABELS)
    px = np.asarray(out)                                            # (96, 128, 3)
    color = PALETTE[1]
    assert out.size == image.size and image.getpixel((20, 60)) == (0, 0, 0)   # input untouched
    for x, y in [(20, 60), (59, 60), (40, 40), (40, 79)]:           # left, right, top, bottom edges
        assert tuple(px[y, x]) == color, (x, y)
    assert (px[50:70, 30:50] == 0).all()                            # inside the box: untouched
    assert (px[85:, :] == 0).all() and (px[:, 70:] == 0).all()      # nothing right of or below it
    tag = px[:40, 20:60]                                            # the "dog 0.93" tag above the box
    assert (tag == color).all(axis=-1).sum() > 50
    assert (tag > 200).all(axis=-1).sum() > 10                      # white (anti-aliased) text on it


def test_tag_moves_inside_a_box_touching_the_top_edge():
    image = np.zeros((64, 64, 3), np.uint8)
    det = as_detections({"boxes": [[4, 0, 60, 60]], "scores": [0.5], "labels": [2]}, LABELS)
    px = np.asarray(draw_detections(image, det, LABELS))
    assert (px[2:14, 6:30] > 200).all(axis=-1).sum() > 10           # text drawn inside the box


def test_rows_for_json():
    det = filter_detections(RESULT, score_threshold=0.75, iou_threshold=0.5, label_names=LABELS)
    assert detection_rows(det, LABELS) == [
        {"label": "cat", "score": 0.9, "box": [10.0, 10.0, 50.0, 50.0]},
        {"label": "dog", "score": 0.8, "box": [12.0, 10.0, 52.0, 50.0]}]


def _detection_page():
    import numpy as np
    import streamlit as st
    from PIL import Image

    from serving.demo.page import show_detections

    result = {"boxes": [[10, 10, 50, 50], [14, 12, 54, 52], [60, 60, 90, 90]],
              "scores": [0.9, 0.6, 0.2], "labels": [0, 0, 1]}
    score = st.slider("score", 0.0, 1.0, 0.5, key="score")
    iou = st.slider("iou", 0.05, 1.0, 0.45, key="iou")
    image = Image.fromarray(np.zeros((96, 96, 3), np.uint8))
    rows = show_detections(image, result, ("cat", "dog"), score_threshold=score, iou_threshold=iou,
                           key="t")
    st.markdown(f"kept {len(rows)}")


def test_page_renders_detections_and_follows_the_sliders():
    at = AppTest.from_function(_detection_page, default_timeout=30).run()
    assert not at.exception
    assert at.markdown[-1].value == "kept 1"                        # 0.6 cat suppressed, 0.2 dog filtered
    assert at.table[0].value["label"].tolist() == ["cat"]
    assert at.get("download_button")[0].label == "Download annotated image"
    at.slider(key="score").set_value(0.1).run()
    assert at.markdown[-1].value == "kept 2"                        # the dog now passes
    at.slider(key="iou").set_value(0.9).run()
    assert at.markdown[-1].value == "kept 3"                        # IoU 0.75 < 0.9: both cats stay
    assert not at.exception


def test_small_images_are_enlarged_for_showing_with_their_boxes():
    from serving.demo.detection import enlarged

    det = as_detections({"boxes": [[20, 40, 60, 80]], "scores": [0.93], "labels": [1]}, LABELS)
    big, scaled = enlarged(Image.new("RGB", (128, 96)), det)                # 96 -> 384: factor 4
    assert big.size == (512, 384) and scaled["boxes"].tolist() == [[80, 160, 240, 320]]
    assert det["boxes"].tolist() == [[20, 40, 60, 80]]                      # the caller's copy untouched
    same, kept = enlarged(Image.new("RGB", (800, 600)), det)
    assert same.size == (800, 600) and kept["boxes"].tolist() == [[20, 40, 60, 80]]
