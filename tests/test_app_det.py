"""The Streamlit demo (app.py) on detectors, through streamlit.testing's AppTest, with a really
trained and exported tiny SSD (tests/demo_runs.py::build_det_run): facts, scene samples and
uploads boxed, the score/IoU sliders, A/B of two detector files, bad input as one st.error, no
TensorFlow imported, and a detection file without its metadata refused."""
from __future__ import annotations

import io
import json
import subprocess
import sys

from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.app_testing import APP, SAMPLES, texts, upload_images
from tests.demo_runs import RUN


def test_detection_artifact_without_detection_metadata_is_refused_with_a_clear_line(app, demo_runs_root,
                                                                                    tmp_path):
    """A file whose contract says task=detection but that lacks the exported detector's
    "detection"/"outputs" metadata (here: a classifier relabelled) is refused when it loads,
    with one clear st.error line naming it, never run as a classifier."""
    from serving.metadata import embed_tflite_metadata, read_tflite_metadata

    src = demo_runs_root / RUN / "export" / "model_fp32.tflite"
    meta = read_tflite_metadata(src)
    meta["contract"] = {**meta["contract"], "task": "detection",
                        "extra": {"score_threshold": 0.3, "iou_threshold": 0.6}}
    export = tmp_path / "runs" / "det" / "export"
    export.mkdir(parents=True)
    (export / "model_fp32.tflite").write_bytes(embed_tflite_metadata(src.read_bytes(), meta))
    at = app(tmp_path / "runs")
    assert not at.exception
    assert any("without detection metadata" in t for t in texts(at.error)), texts(at.error)



# ------------------------------------------------------------------ a real exported detector

def _det_options(at: AppTest) -> dict[str, int]:
    """file name -> index in the A selectbox of the detector runs root."""
    return {o.split(" · ")[0].split(" / ")[1]: i for i, o in enumerate(at.selectbox(key="art_a").options)}


def _box_tables(at: AppTest) -> list:
    return [t.value for t in at.table if "box x0,y0,x1,y1" in t.value.columns]


def _det_app(app, det_runs_root, file: str = "model_fp32.tflite") -> AppTest:
    at = app(det_runs_root)
    at.selectbox(key="art_a").set_value(_det_options(at)[file]).run()
    return at


def test_detector_facts_and_its_scene_samples(app, det_runs_root):
    from tests.demo_runs import DET_FILES

    at = app(det_runs_root)
    assert not at.exception and not at.error
    assert set(_det_options(at)) == set(DET_FILES)
    assert all("boxes reproduced" in o for o in at.selectbox(key="art_a").options)
    at = _det_app(app, det_runs_root)
    facts = dict(zip(at.table[0].value["fact"], at.table[0].value["value"]))
    assert facts["task"] == "detection, 3 labels"
    assert facts["NMS in the file"] == ("score > 0.1, IoU > 0.45 suppresses, at most 20 boxes "
                                        "(NonMaxSuppressionV5, class-aware)")
    assert facts["output"].startswith("boxes (1, K, 4)")
    # scenes for a detector, never the one-shape samples; the score slider starts where `serving
    # detect` filters (0.3, above the file's floor), the IoU slider at the file's own value
    assert at.multiselect(key="samples").options == ["scene_a.png", "scene_b.png", "scene_c.png"]
    assert at.slider(key="score").value == 0.3 and at.slider(key="iou").value == 0.45
    assert "only be stricter" in at.slider(key="iou").help
    assert any("NMS inside the file (A: score > 0.1, IoU 0.45)" in c.value for c in at.caption)


def test_detector_boxes_a_sample_scene_and_an_upload(app, det_runs_root):
    from tests.demo_runs import scene_truth

    at = _det_app(app, det_runs_root)
    at.multiselect(key="samples").select("scene_a.png")
    at = upload_images(at, ("my scene.png", (SAMPLES / "scene_c.png").read_bytes()))
    assert not at.exception and not at.error
    heads = [t for t in texts(at.markdown) if t.startswith("**A: ")]
    assert len(heads) == 2 and all(t.startswith("**A: det/model_fp32.tflite** · latency ") for t in heads)
    assert all(" ms (model " in t for t in heads)
    upload, sample = _box_tables(at)                           # uploads first, then samples
    assert "circle" in upload["label"].tolist()                # scene_c's circle, uploaded
    assert "square" in sample["label"].tolist()                # scene_a: two squares
    assert all(float(s) > 0.1 for s in sample["score"])
    captions = texts(at.caption)
    truth = [o["label"] for o in scene_truth()["scene_a.png"]["objects"]]
    assert "ground truth: " + ", ".join(truth) in captions     # only the picked sample has one
    found = [c for c in captions if c.startswith("found ")]
    assert len(found) == 1 and int(found[0].split()[1].split("/")[0]) >= 1
    labels = [b.label for b in at.get("download_button")]
    assert labels.count("Download annotated image") == 2 and labels[-1] == "Download results (JSON)"


def test_detector_sliders_act_on_the_files_boxes(app, det_runs_root):
    """The samples (boxes at score ~1) and a mirrored scene the detector is unsure about (low
    scores, overlapping boxes of one class): both sliders remove boxes, never add any."""
    mirrored = io.BytesIO()
    Image.open(SAMPLES / "scene_a.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored, "PNG")
    at = _det_app(app, det_runs_root)
    at.multiselect(key="samples").select("scene_a.png").select("scene_b.png").select("scene_c.png")
    at = upload_images(at, ("mirrored.png", mirrored.getvalue()))
    at.slider(key="score").set_value(0.1).run()                # the file's floor: all its boxes
    assert not at.exception and not at.error
    base = [len(t) for t in _box_tables(at)]
    assert sum(base) > 3
    at.slider(key="score").set_value(0.9).run()
    high = [len(t) for t in _box_tables(at)]
    assert sum(high) < sum(base) and all(h <= b for h, b in zip(high, base))
    assert all(float(s) > 0.9 for t in _box_tables(at) for s in t["score"])
    at.slider(key="score").set_value(0.1).run()
    at.slider(key="iou").set_value(0.05).run()                 # stricter NMS on the file's boxes
    strict = [len(t) for t in _box_tables(at)]
    assert sum(strict) < sum(base) and all(s <= b for s, b in zip(strict, base))
    at.slider(key="iou").set_value(0.9).run()                  # looser than the file: nothing comes back
    assert [len(t) for t in _box_tables(at)] == base
    assert not at.exception and not at.error


def test_two_detector_files_side_by_side(app, det_runs_root):
    at = _det_app(app, det_runs_root, "model.onnx")
    at.checkbox(key="compare").check().run()
    b = at.selectbox(key="art_b")
    assert b.options[b.value].startswith("det / model_fp32.tflite")
    at.multiselect(key="samples").select("scene_a.png").select("scene_b.png").run()
    assert not at.exception and not at.error
    md = texts(at.markdown)
    assert sum(t.startswith("**A: det/model.onnx**") for t in md) == 2
    assert sum(t.startswith("**B: det/model_fp32.tflite**") for t in md) == 2
    summary = next(t for t in md if t.startswith("Box agreement **"))
    shared, total = summary.split("**")[1].split("/")
    assert int(total) > 0 and int(shared) == int(total)        # ONNX and TFLite fp32 agree
    table = next(t.value for t in at.table if "A's boxes B also gives" in t.value.columns)
    assert table["image"].tolist() == ["scene_a.png", "scene_b.png"]


def test_detector_bad_image_is_one_error_line(app, det_runs_root):
    at = upload_images(_det_app(app, det_runs_root), ("notes.png", b"not an image"),
                       ("fine.png", (SAMPLES / "scene_b.png").read_bytes()))
    assert not at.exception
    assert texts(at.error) == ["notes.png: not an image, or a format Pillow cannot read"]
    assert len(_box_tables(at)) == 1


def test_detection_results_json_and_no_tensorflow(det_runs_root):
    """The detector path (file's NMS, the slider's serving.nms, drawing) runs without TensorFlow,
    and the results JSON carries the boxes and the file's NMS settings."""
    from tests.demo_runs import DET_RUN

    path = det_runs_root / DET_RUN / "export" / "model_fp32.tflite"
    code = ("import sys, json\n"
            "from pathlib import Path\n"
            "from serving.demo.inference import detect, open_model, results_document\n"
            "from serving.demo.detection import detection_rows, filter_detections\n"
            f"m = open_model(Path({str(path)!r}))\n"
            f"raw = detect(m, 's', Path({str(SAMPLES / 'scene_a.png')!r}).read_bytes())\n"
            "det = filter_detections(raw, score_threshold=0.3, iou_threshold=0.45, label_names=m.labels)\n"
            "rows = detection_rows(det, m.labels)\n"
            "doc = results_document([m], [{'image': 's', 'answers': [{'detections': rows}]}])\n"
            "print(json.dumps(doc))\n"
            "print(sorted(k for k in ('tensorflow', 'keras', 'tf_keras') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=APP.parent,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    doc_line, modules = out.stdout.strip().splitlines()[-2:]
    assert modules == "[]"
    doc = json.loads(doc_line)
    assert doc["models"][0]["task"] == "detection"
    assert doc["models"][0]["nms"] == {"score_threshold": 0.1, "iou_threshold": 0.45, "max_detections": 20}
    rows = doc["images"][0]["answers"][0]["detections"]
    assert "square" in [r["label"] for r in rows] and all(len(r["box"]) == 4 for r in rows)
