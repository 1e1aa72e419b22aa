"""The Streamlit demo (app.py) through streamlit.testing's AppTest, with a real tiny exported
run (tests/demo_runs.py): no runs, runs, classification of uploads and samples, A/B compare,
model uploads with and without a manifest, and every bad-input path ending in one st.error."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from serving.demo.settings import MAX_IMAGE_BYTES
from tests.app_testing import APP, SAMPLES, png, texts, upload_images
from tests.demo_runs import LABELS, RUN


def test_no_runs_shows_how_to_make_one(app, tmp_path):
    at = app(tmp_path / "empty")
    assert not at.exception and not at.error
    info = " ".join(texts(at.info))
    assert "No exported models found" in info and "make run" in info and "python -m pipeline run" in info
    assert str(tmp_path / "empty") in info


def test_lists_the_runs_artifacts(app, demo_runs_root):
    at = app(demo_runs_root)
    assert not at.exception and not at.error
    options = at.selectbox(key="art_a").options
    assert len(options) == 2
    assert options[0].startswith(f"{RUN} / model_fp32.tflite · tflite_fp32 · ")
    assert "top-1 agree 1.000" in options[0]
    assert options[1].startswith(f"{RUN} / model_int8_uint8io.tflite · tflite_int8 · ")
    facts = at.table[0].value
    assert dict(zip(facts["fact"], facts["value"]))["task"] == "classification, 4 labels"
    assert "matches manifest.json" in dict(zip(facts["fact"], facts["value"]))["sha256"]


def test_runs_argument_wins_over_env(app, demo_runs_root, tmp_path):
    at = app(tmp_path / "elsewhere", "--runs", str(demo_runs_root))
    assert not at.exception and len(at.selectbox(key="art_a").options) == 2


def test_unknown_argument_is_one_error_line(app, demo_runs_root):
    at = app(demo_runs_root, "--rnus", "x")
    assert not at.exception
    assert texts(at.error) == ["unknown argument '--rnus'; the demo takes only --runs DIR "
                               "(streamlit run app.py -- --runs DIR)"]


def test_classifies_uploads_and_samples(app, demo_runs_root):
    at = app(demo_runs_root)
    at.multiselect(key="samples").select("square.png")
    at = upload_images(at, ("circle.png", (SAMPLES / "circle.png").read_bytes()))
    assert not at.exception and not at.error
    answers = [t for t in texts(at.markdown) if t.startswith("**A: ")]
    assert [a.split("**")[1] for a in answers] == ["A: circle", "A: square"]
    assert all(" ms (model " in a and "latency " in a for a in answers)
    topk = at.table[1].value                                   # table 0: model facts
    assert topk["label"].tolist()[0] == "circle" and sorted(topk["label"]) == sorted(LABELS)
    assert at.get("download_button")[-1].label == "Download results (JSON)"
    # top-k follows the slider
    at.slider(key="topk").set_value(2).run()
    assert len(at.table[1].value) == 2


def test_gif_first_frame_and_webp(app, demo_runs_root):
    circle, star = (Image.open(SAMPLES / f"{n}.png").convert("RGB") for n in ("circle", "star"))
    gif, webp = io.BytesIO(), io.BytesIO()
    circle.save(gif, format="GIF", save_all=True, append_images=[star, star], duration=100)
    star.save(webp, format="WEBP", lossless=True)
    at = upload_images(app(demo_runs_root), ("anim.gif", gif.getvalue()), ("star.webp", webp.getvalue()))
    assert not at.exception and not at.error
    answers = [t.split("**")[1] for t in texts(at.markdown) if t.startswith("**A: ")]
    assert answers == ["A: circle", "A: star"]                 # the GIF's first frame is the circle


def test_demo_never_imports_tensorflow(demo_runs_root):
    """The page runs exported files the way a device does: LiteRT, no TensorFlow/Keras."""
    code = ("import sys, serving.demo.page as p\n"
            "from pathlib import Path\n"
            "from serving.demo.inference import classify, open_model\n"
            f"m = open_model(Path({str(demo_runs_root / RUN / 'export' / 'model_fp32.tflite')!r}))\n"
            f"print(classify(m, 'c', Path({str(SAMPLES / 'circle.png')!r}).read_bytes(), 2)['label'])\n"
            "print(sorted(k for k in ('tensorflow', 'keras', 'tf_keras') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=APP.parent,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["circle", "[]"]


def test_compares_two_artifacts_side_by_side(app, demo_runs_root):
    at = app(demo_runs_root)
    at.checkbox(key="compare").check().run()
    assert at.selectbox(key="art_b").value == 1                # the int8 file, not A again
    at = upload_images(at, ("star.png", (SAMPLES / "star.png").read_bytes()))
    assert not at.exception and not at.error
    md = texts(at.markdown)
    assert any(t.startswith("**A: star**") for t in md) and any(t.startswith("**B: star**") for t in md)
    assert any(t.startswith("Top-1 agreement **1/1**") for t in md)
    facts_b = at.table[1].value
    rows = dict(zip(facts_b["fact"], facts_b["value"]))
    assert rows["input"].startswith(r"uint8 \[") and "scale" in rows["input"]   # Markdown-escaped
    assert rows["quantization"].startswith("weights int8, activations int8, calibrated on 32 images")


def test_bad_image_uploads_are_one_error_line_each(app, demo_runs_root):
    big = io.BytesIO()
    Image.new("L", (8000, 6000)).save(big, format="PNG")       # 48 MP, a small file
    good = png()
    at = app(demo_runs_root)
    at = upload_images(at, ("notes.png", b"this is not an image"),
                       ("cut.png", good[: len(good) // 2]),
                       ("huge.png", big.getvalue()),
                       ("heavy.png", b"\x89PNG" + bytes(MAX_IMAGE_BYTES)),
                       ("fine.png", good))
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 4 and all("\n" not in e for e in errors)
    assert errors[0] == "notes.png: not an image, or a format Pillow cannot read"
    assert errors[1].startswith("cut.png: truncated or corrupt image")
    assert errors[2] == "huge.png: 8000x6000 pixels is over the limit of 40,000,000"
    assert errors[3].startswith("heavy.png: 20.0 MB is over the upload limit of 20.0 MB")
    assert sum(t.startswith("**A: ") for t in texts(at.markdown)) == 1     # fine.png still answered


def _upload_model(at: AppTest, name: str, data: bytes, manifest: bytes | None = None) -> AppTest:
    at.radio(key="source").set_value("Upload a file").run()
    at.file_uploader(key="model_file").set_value((name, data, "application/octet-stream"))
    if manifest is not None:
        at.file_uploader(key="model_manifest").set_value(("manifest.json", manifest, "application/json"))
    return at.run()


def test_uploaded_model_with_and_without_manifest(app, demo_runs_root):
    export = demo_runs_root / RUN / "export"
    data = (export / "model_int8_uint8io.tflite").read_bytes()
    at = _upload_model(app(demo_runs_root), "model_int8_uint8io.tflite", data)
    assert not at.exception and not at.error
    facts = dict(zip(at.table[0].value["fact"], at.table[0].value["value"]))
    assert facts["format"].startswith("tflite_int8") and "no manifest check" in facts["sha256"]
    at = upload_images(at, ("circle.png", (SAMPLES / "circle.png").read_bytes()))
    assert any(t.startswith("**A: circle**") for t in texts(at.markdown))

    at = _upload_model(app(demo_runs_root), "model_int8_uint8io.tflite", data,
                       (export / "manifest.json").read_bytes())
    assert not at.exception and not at.error
    facts = dict(zip(at.table[0].value["fact"], at.table[0].value["value"]))
    assert "matches manifest.json" in facts["sha256"] and facts["parity"].startswith("top-1 agree")


@pytest.mark.parametrize("case", ["swapped", "garbage", "unlisted", "bad_manifest"])
def test_bad_model_uploads_are_one_error_line(app, demo_runs_root, case):
    export = demo_runs_root / RUN / "export"
    manifest = (export / "manifest.json").read_bytes()
    name, data, man, expected = {
        # the int8 file under the fp32 name: the manifest's sha256 refuses it
        "swapped": ("model_fp32.tflite", (export / "model_int8_uint8io.tflite").read_bytes(), manifest,
                    "does not match"),
        "garbage": ("model.tflite", b"\x00" * 64, None, "not a TFLite flatbuffer"),
        "unlisted": ("other.tflite", (export / "model_fp32.tflite").read_bytes(), manifest,
                     "other.tflite: not listed in"),
        "bad_manifest": ("model_fp32.tflite", (export / "model_fp32.tflite").read_bytes(), b"{oops",
                         "not valid JSON"),
    }[case]
    at = _upload_model(app(demo_runs_root), name, data, man)
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and expected in errors[0] and "\n" not in errors[0]
    assert not at.table                                         # no model facts for a refused file


def test_store_upload_refuses_what_the_uploader_filter_would(tmp_path):
    """The browser's file dialog only offers .tflite/.onnx (Streamlit also refuses other
    suffixes itself); store_upload checks again for callers outside the page."""
    from serving.demo.inference import store_upload
    from serving.demo.settings import DemoError

    with pytest.raises(DemoError, match=r"^model.keras: not a model file the demo runs"):
        store_upload("model.keras", b"PK\x03\x04", base=tmp_path)
    with pytest.raises(DemoError, match=r"^m.onnx: empty file$"):
        store_upload("m.onnx", b"", base=tmp_path)
    path, manifest = store_upload("../../evil name.tflite", b"TFL3", b"{}", base=tmp_path)
    assert path.parent.parent == tmp_path and path.name == "evil_name.tflite"
    assert manifest == path.parent / "manifest.json" and manifest.read_bytes() == b"{}"


def test_tampered_run_file_is_refused(app, demo_runs_root, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(demo_runs_root / RUN, root / RUN)
    target = root / RUN / "export" / "model_fp32.tflite"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF                                            # same size, different bytes
    target.write_bytes(bytes(data))
    at = app(root)
    assert not at.exception
    assert len(at.error) == 1 and "sha256" in at.error[0].value and "does not match" in at.error[0].value
    # the other file of the run still works
    at.selectbox(key="art_a").set_value(1).run()
    assert not at.exception and not at.error


def test_results_json_has_every_answer(demo_runs_root):
    from serving.demo.inference import classify, open_model, results_document

    model = open_model(demo_runs_root / RUN / "export" / "model_int8_uint8io.tflite", name="int8")
    answer = classify(model, "ring.png", (SAMPLES / "ring.png").read_bytes(), topk=3)
    doc = json.loads(json.dumps(results_document([model], [{"image": "ring.png", "answers": [answer]}])))
    assert doc["schema"] == "cnn-pipeline/demo-results/v1"
    assert doc["models"][0]["format"] == "tflite_int8" and doc["models"][0]["verified"] is True
    assert doc["models"][0]["input"]["dtype"] == "uint8"
    got = doc["images"][0]["answers"][0]
    assert len(got["topk"]) == 3 and got["label"] == got["topk"][0][0] and got["latency_ms"] > 0
    probs = [p for _, p in got["topk"]]
    assert probs == sorted(probs, reverse=True) and 0 <= probs[-1] and probs[0] <= 1
    full = classify(model, "ring.png", (SAMPLES / "ring.png").read_bytes(), topk=len(LABELS))
    assert np.isclose(sum(p for _, p in full["topk"]), 1.0, atol=0.02)    # int8 output: 1/256 steps


def test_demo_runs_a_real_pipeline_export(app, digits_export, tmp_path):
    """The export stage's own output (all five formats, gated, manifest) in the demo: every
    file listed with its parity, ONNX (A) and full-int8 TFLite (B) answer a digit sample."""
    root = tmp_path / "runs"
    root.mkdir()
    (root / "digits").symlink_to(digits_export.out_dir.parent, target_is_directory=True)
    at = app(root)
    assert not at.exception and not at.error
    options = at.selectbox(key="art_a").options
    files = {o.split(" · ")[0]: o for o in options}
    assert set(files) == {f"digits / {r['file']}" for r in digits_export.artifacts}
    assert all("top-1 agree" in o for o in options)
    onnx = next(i for i, o in enumerate(options) if o.startswith("digits / model.onnx"))
    int8 = next(i for i, o in enumerate(options) if "· tflite_int8 ·" in o)
    at.selectbox(key="art_a").set_value(onnx).run()
    at.checkbox(key="compare").check().run()
    at.selectbox(key="art_b").set_value(int8).run()
    at.multiselect(key="samples").select("digit_3.png").select("digit_7.png").run()
    assert not at.exception and not at.error
    answers = [t.split("**")[1] for t in texts(at.markdown) if t.startswith(("**A: ", "**B: "))]
    assert answers == ["A: 3", "B: 3", "A: 7", "B: 7"]
    facts = dict(zip(at.table[0].value["fact"], at.table[0].value["value"]))
    assert facts["format"].startswith("onnx (onnx") and "matches manifest.json" in facts["sha256"]


def test_a_refused_upload_is_named_as_uploaded_and_leaves_no_temp_files(app, demo_runs_root, tmp_path,
                                                                        monkeypatch):
    """Errors name the file as the user called it (not the temp folder it was saved in), and
    the saved copy is removed whether the upload loads or not."""
    from serving.demo import inference

    base = tmp_path / "uploads"
    monkeypatch.setattr(inference, "UPLOAD_DIR", base)
    at = _upload_model(app(demo_runs_root), "my model.tflite", b"\x00" * 64)
    (error,) = texts(at.error)
    assert error.startswith("my model.tflite: not a TFLite flatbuffer"), error
    assert str(base) not in error and "upload-" not in error
    good = (demo_runs_root / RUN / "export" / "model_fp32.tflite").read_bytes()
    model = inference.open_upload("mine.tflite", good, base=base)
    assert model.name == "mine.tflite" and model.runner.predict(
        np.zeros((1, *model.runner.contract.input_shape), np.uint8)).shape[0] == 1
    assert not list(base.iterdir())                  # nothing left on disk, the model still runs
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    with pytest.raises(inference.DemoError, match=r"^mine\.tflite: the file was changed or damaged"):
        inference.open_upload("mine.tflite", bytes(damaged), base=base)
    assert not list(base.iterdir())


def test_tta_checkbox_averages_over_views(app, demo_runs_root):
    at = app(demo_runs_root)
    at = upload_images(at, ("circle.png", (SAMPLES / "circle.png").read_bytes()))
    plain = next(t for t in texts(at.markdown) if t.startswith("**A: "))
    assert "TTA" not in plain
    at.checkbox(key="tta_on").check().run()
    at.radio(key="tta").set_value("flip_crop").run()
    assert not at.exception and not at.error
    answer = next(t for t in texts(at.markdown) if t.startswith("**A: "))
    assert answer.endswith("TTA: 10 views")


def test_only_samples_of_the_models_labels_are_offered(app, demo_runs_root):
    at = app(demo_runs_root)
    assert sorted(at.multiselect(key="samples").options) == ["circle.png", "square.png", "star.png",
                                                            "triangle.png"]   # no digits, no cross
