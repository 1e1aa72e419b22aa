"""The demo renders what a model file or an upload names as plain text (issue 20, cause 9): a
label such as ![t](http://host/track.png) is never an image the visitor's browser fetches; and
its detector score slider starts where `serving detect` filters (cause 14)."""
from streamlit.testing.v1 import AppTest

HOSTILE = "![t](http://127.0.0.1:9/track.png)"


def _page():
    """Run as the app by AppTest: the page's own rendering functions with a hostile label."""
    import numpy as np
    from PIL import Image

    from serving.demo import page

    bad = "![t](http://127.0.0.1:9/track.png)"
    page.show_classification("A", {"label": bad, "score": 0.9, "latency_ms": 1.0, "model_ms": 0.5,
                                   "topk": [[bad, 0.9], ["ok", 0.1]]})
    page.show_detections(Image.new("RGB", (32, 32)), {
        "boxes": np.array([[0.1, 0.1, 0.6, 0.6]], np.float32), "scores": np.array([0.9], np.float32),
        "labels": np.array([0], np.int32)}, [bad], score_threshold=0.3, iou_threshold=0.5, key="k")
    rows = [{"image": bad, "answers": [{"model": m, "label": bad, "score": 0.9, "latency_ms": 1.0}
                                       for m in "ab"]}]
    page.show_comparison([None, None], rows)


def _rendered(at: AppTest) -> list[str]:
    """Every piece of text the page hands to Streamlit's Markdown renderer."""
    texts = [e.value for kind in ("markdown", "caption", "error", "subheader") for e in getattr(at, kind)]
    for table in at.table:
        texts += [str(v) for v in table.value.to_numpy().ravel()]
    return texts


def test_labels_are_plain_text_in_markdown_captions_and_tables():
    at = AppTest.from_function(_page, default_timeout=60).run()
    assert not at.exception, at.exception
    shown = _rendered(at)
    assert any("track" in t for t in shown)                 # the label is shown ...
    for text in shown:                                       # ... never as Markdown image or link
        assert "![" not in text and "[t]" not in text, text


def test_plain_text_survives_markdown_unchanged():
    from serving.demo.settings import plain

    assert plain(HOSTILE) == r"!\[t\](http://127.0.0.1:9/track.png)"
    assert plain("<img src=x> $x$ *a* `c` a|b # h") == r"\<img src=x> \$x\$ \*a\* \`c\` a\|b \# h"
    assert plain("circle") == "circle" and plain("a\nb") == "a b"
    assert plain("model_fp32.tflite") == "model_fp32.tflite" and plain("_x_") == r"\_x\_"


def test_detector_score_slider_starts_at_the_serving_threshold(det_runs_root, app):
    from serving.__main__ import DetectConfig

    at = app(det_runs_root)
    slider = at.sidebar.slider(key="score")
    assert slider.value == DetectConfig().score == 0.3
    assert slider.min == 0.0                                 # the file's floor (0.05) stays reachable
    at = slider.set_value(0.05).run()
    assert at.sidebar.slider(key="score").value == 0.05
