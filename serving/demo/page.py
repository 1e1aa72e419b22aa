"""The Streamlit page: pick exported artifacts, give images, see answers, latencies and facts.

    streamlit run app.py [-- --runs DIR]

Layout: the sidebar chooses model A (an artifact found in the runs root, or an uploaded
.tflite/.onnx with an optional manifest.json) and optionally model B to compare side by side,
plus top-k or, for detection models, the score/IoU sliders (acting on the file's own outputs:
score filters its boxes, IoU re-runs serving.nms on them, so it can only be stricter than the
NMS baked into the file). The main area shows the models' facts (a detector's baked-in NMS
settings among them), then one box per image with each model's answer (classification: top-k
table + bar chart; detection: the annotated image, its box list and a PNG download) and
latency, an A-vs-B summary and JSON downloads.
Every user mistake ends in one st.error line; the rest of the page keeps working.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image

from serving.demo.catalog import Artifact, scan_runs
from serving.demo.detection import detection_rows, enlarged, filter_detections
from serving.demo.inference import (
    DemoModel,
    check_image,
    classify,
    detect,
    file_nms,
    model_facts,
    open_model,
    open_upload,
    results_document,
    upload_key,
)
from serving.demo.settings import (
    IMAGE_TYPES,
    LOAD_ERRORS,
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    MAX_MODEL_BYTES,
    RUNS_ENV,
    TOPK,
    DemoError,
    one_line,
    plain,
    runs_root,
)
from serving.images import ImageError
from serving.samples import found, list_samples, read_scenes, sample_label, samples_for
from serving.tasks.detect import SCORE_THRESHOLD, draw_detections

SLOTS = ("A", "B")
FROM_RUNS, FROM_UPLOAD = "Exported runs", "Upload a file"
def no_runs_message(root: Path) -> str:
    return (f"**No exported models found in `{root}` yet.** The demo runs exported files "
            "(`.tflite`, `.onnx`) the way a phone or edge board would, so make one first:\n\n"
            "1. `make run` - runs the main job, `python -m pipeline run`: it trains a small CNN on "
            "built-in data and exports it to `runs/<name>/export/` (TFLite fp32/fp16/dynamic/int8 "
            "and ONNX, each checked against the Keras model, listed in `manifest.json`).\n"
            "2. Already have a run? `python -m pipeline export model=runs/<name>`.\n"
            "3. Reload this page.\n\n"
            f"Runs elsewhere? `streamlit run app.py -- --runs DIR` or `{RUNS_ENV}=DIR`. "
            f"Or choose **{FROM_UPLOAD}** in the sidebar and upload a `.tflite`/`.onnx` file.")


# --- models -------------------------------------------------------------------------------

@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _cached_model(path: str, fingerprint: str, manifest: str | None, name: str) -> DemoModel:
    """One DemoModel per (file, fingerprint, manifest): the fingerprint (mtime + size, or the
    upload's sha256) makes a changed file load, and be verified, again."""
    del fingerprint   # part of the cache key only
    return open_model(Path(path), manifest, name=name)


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def _cached_upload(key: str, name: str, _data: bytes, _manifest: bytes | None) -> DemoModel:
    """One DemoModel per upload (key: sha256 of the file and its manifest); the bytes are not
    hashed again by Streamlit (leading underscore) and not kept on disk (open_upload)."""
    del key   # part of the cache key only
    return open_upload(name, _data, _manifest)


def _fingerprint(path: Path) -> str:
    st_ = path.stat()
    man = path.parent / "manifest.json"
    man_part = f":{man.stat().st_mtime_ns}" if man.is_file() else ""
    return f"{st_.st_mtime_ns}:{st_.st_size}{man_part}"


def load_artifact(art: Artifact) -> DemoModel | None:
    try:
        return _cached_model(str(art.path), _fingerprint(art.path), "auto", f"{art.run}/{art.file}")
    except LOAD_ERRORS as e:
        st.error(plain(one_line(e)))
        return None


def load_upload() -> DemoModel | None:
    """The sidebar's model upload (+ optional manifest.json); None until one is given or
    when it cannot be used (then one st.error line)."""
    sb = st.sidebar
    up = sb.file_uploader("Model file (.tflite or .onnx)", type=["tflite", "onnx"], key="model_file",
                          max_upload_size=MAX_MODEL_BYTES // 2**20)
    man = sb.file_uploader("Its manifest.json (optional: the sha256 is then checked)", type=["json"],
                           key="model_manifest")
    if up is None:
        st.info("Upload a `.tflite` or `.onnx` file exported by `python -m pipeline export` "
                "(its metadata carries the labels and preprocessing).")
        return None
    data, man_data = up.getvalue(), (man.getvalue() if man else None)
    try:
        return _cached_upload(upload_key(data, man_data), up.name, data, man_data)
    except LOAD_ERRORS as e:
        st.error(plain(one_line(e)))
        return None


def choose_models(root: Path) -> list[DemoModel]:
    """Sidebar: model A (and B); [] when there is nothing to run yet."""
    sb = st.sidebar
    sb.header("Model")
    catalog = scan_runs(root)
    sb.caption(f"runs root: `{root}` · {len(catalog.artifacts)} exported files")
    for problem in catalog.problems:
        sb.warning(plain(problem))
    source = sb.radio("Model source", [FROM_RUNS, FROM_UPLOAD], key="source", horizontal=True)
    arts = catalog.artifacts
    models: list[DemoModel] = []
    if source == FROM_UPLOAD:
        first = load_upload()
    elif not arts:
        st.info(no_runs_message(root))
        return []
    else:
        i = sb.selectbox("A: artifact", range(len(arts)), index=catalog.default_index(),
                         format_func=lambda k: arts[k].label, key="art_a")
        first = load_artifact(arts[i])
    if first is None:
        return []
    models.append(first)
    if arts and sb.checkbox("Compare with a second artifact (B)", key="compare"):
        default = next((k for k, a in enumerate(arts) if a.path != first.runner.path), 0)
        j = sb.selectbox("B: artifact", range(len(arts)), index=default,
                         format_func=lambda k: arts[k].label, key="art_b")
        second = load_artifact(arts[j])
        if second is not None:
            models.append(second)
    return models


def show_facts(models: Sequence[DemoModel]) -> None:
    st.subheader("Model" if len(models) == 1 else "Models")
    for slot, model, col in zip(SLOTS, models, st.columns(len(models))):
        with col:
            st.markdown(f"**{slot} · {plain(model.name)}**")
            facts = model_facts(model)
            st.table({"fact": [k for k, _ in facts], "value": [plain(v) for _, v in facts]}, hide_index=True)


# --- images ---------------------------------------------------------------------------------

def choose_images(samples_dir: Path, models: Sequence[DemoModel] = ()
                  ) -> list[tuple[str, bytes, dict[str, Any] | None]]:
    """(name, bytes, ground truth of a picked sample scene or None) of every image to run."""
    st.subheader("Images")
    left, right = st.columns(2)
    uploads = left.file_uploader(
        f"Upload images ({', '.join(IMAGE_TYPES)}; up to {MAX_IMAGE_BYTES // 2**20} MB each)",
        type=list(IMAGE_TYPES), accept_multiple_files=True, key="images",
        max_upload_size=MAX_IMAGE_BYTES // 2**20)
    every, scenes = list_samples(samples_dir), read_scenes(samples_dir)
    labels = list(dict.fromkeys(label for m in models for label in m.labels))
    samples = {n: p for m in models for n, p in samples_for(every, m.labels, m.task, scenes).items()}
    samples = {n: samples[n] for n in every if n in samples} if models else every
    if every and not samples:
        shown = sorted({sample_label(n) for n in every if n not in scenes})
        right.caption(f"No built-in sample shows one of this model's labels "
                      f"({', '.join(map(plain, labels[:6]))}"
                      f"{', ...' if len(labels) > 6 else ''}); the samples are "
                      f"{', '.join(shown)}{' and circle/square/triangle scenes' if scenes else ''}. "
                      "Upload your own images.")
    picked = right.multiselect("…or pick built-in samples", list(samples), key="samples")
    images = [(f.name, f.getvalue(), None) for f in uploads or []]
    images += [(name, samples[name].read_bytes(), scenes.get(name)) for name in picked]
    if len(images) > MAX_IMAGES:
        st.warning(f"{len(images)} images given; the demo runs the first {MAX_IMAGES}.")
        images = images[:MAX_IMAGES]
    return images


def show_classification(slot: str, answer: dict[str, Any]) -> None:
    views = {"flip": " · TTA: 2 views", "flip_crop": " · TTA: 10 views"}.get(answer.get("tta", "none"), "")
    st.markdown(f"**{slot}: {plain(answer['label'])}** · {answer['score']:.1%} · "
                f"latency {answer['latency_ms']:.2f} ms (model {answer['model_ms']:.2f} ms){views}")
    labels = [label for label, _ in answer["topk"]]
    probs = [p for _, p in answer["topk"]]
    st.table({"label": [plain(label) for label in labels], "probability": [f"{p:.4f}" for p in probs]},
             hide_index=True)
    st.bar_chart({"label": labels, "probability": probs}, x="label", y="probability",
                 horizontal=True, sort=False, height=70 + 30 * len(labels))


def show_detections(image: Image.Image, result: dict[str, Any], labels: Sequence[str], *,
                    score_threshold: float, iou_threshold: float, key: str) -> list[dict[str, Any]]:
    """Filter the file's boxes (score, class-aware NMS again), draw, list and offer the
    annotated PNG; returns the kept detections as JSON-ready rows."""
    det = filter_detections(result, score_threshold=score_threshold, iou_threshold=iou_threshold,
                            label_names=labels)
    annotated = draw_detections(image, det, labels)              # the download: original pixels
    rows = detection_rows(det, labels)
    st.image(draw_detections(*enlarged(image, det), labels),
             caption=f"{len(rows)} boxes (score > {score_threshold:.2f}, NMS IoU {iou_threshold:.2f})")
    if rows:
        st.table({"label": [plain(r["label"]) for r in rows], "score": [f"{r['score']:.3f}" for r in rows],
                  "box x0,y0,x1,y1": [", ".join(f"{v:g}" for v in r["box"]) for r in rows]},
                 hide_index=True)
    buf = io.BytesIO()
    annotated.save(buf, format="PNG")
    st.download_button("Download annotated image", buf.getvalue(), file_name=f"{key}.png",
                       mime="image/png", key=f"dl-{key}")
    return rows


def answer_one(slot: str, model: DemoModel, name: str, data: bytes, preview: Image.Image,
               settings: dict[str, Any], key: str, truth: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        if model.task == "detection":
            raw = detect(model, name, data)
            shown = preview.convert("RGB")
            if shown.size != (raw["width"], raw["height"]):   # boxes are in the decoded image's pixels
                raise DemoError(f"{name}: decoded as {raw['width']}x{raw['height']}, previewed as "
                                f"{shown.width}x{shown.height}")
            st.markdown(f"**{slot}: {plain(model.name)}** · latency {raw['latency_ms']:.2f} ms "
                        f"(model {raw['model_ms']:.2f} ms)")
            rows = show_detections(shown, raw, model.labels, key=key, **settings["detection"])
            answer = {"model": model.name, "detections": rows, "latency_ms": round(raw["latency_ms"], 3),
                      "model_ms": round(raw["model_ms"], 3)}
            if truth is not None:
                objects = truth.get("objects", [])
                answer["found"] = found(objects, rows)
                st.caption(f"found {answer['found']}/{len(objects)} ground-truth objects "
                           "(same label, IoU ≥ 0.5)")
            return answer
        answer = classify(model, name, data, settings["topk"], settings.get("tta", "none"))
        show_classification(slot, answer)
        return answer
    except LOAD_ERRORS as e:
        st.error(f"{slot}: {plain(one_line(e))}")
        return {"model": model.name, "error": one_line(e)}


def run_images(models: Sequence[DemoModel], images: list[tuple[str, bytes, dict[str, Any] | None]],
               settings: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for n, (name, data, truth) in enumerate(images):
        with st.container(border=True):
            try:
                preview = check_image(name, data)
            except ImageError as e:
                st.error(plain(one_line(e)))
                rows.append({"image": name, "error": str(e)})
                continue
            cols = st.columns([1] + [2] * len(models))
            cols[0].image(preview.convert("RGB"), caption=f"{plain(name)} · {preview.width}×{preview.height}",
                          width="stretch")   # the column's width: tiny inputs enlarged, big ones shrunk
            if truth is not None:
                cols[0].caption("ground truth: " + ", ".join(plain(o["label"])
                                                             for o in truth.get("objects", [])))
            answers = []
            for slot, model, col in zip(SLOTS, models, cols[1:]):
                with col:
                    answers.append(answer_one(slot, model, name, data, preview, settings,
                                              key=f"{n}-{slot}", truth=truth))
            rows.append({"image": name, "answers": answers})
    return rows


def show_comparison(models: Sequence[DemoModel], rows: list[dict[str, Any]]) -> None:
    answered = [r for r in rows if "answers" in r and len(r["answers"]) == 2]
    if len(models) < 2 or not answered:
        return
    if all("detections" in a for r in answered for a in r["answers"]):
        show_detection_comparison(answered)
        return
    pairs = [r for r in answered if all("label" in a for a in r["answers"])]
    if not pairs:
        return
    st.subheader(f"A vs B on {len(pairs)} images")
    same = [r["answers"][0]["label"] == r["answers"][1]["label"] for r in pairs]
    st.table({"image": [plain(r["image"]) for r in pairs],
              "A": [f"{plain(r['answers'][0]['label'])} {r['answers'][0]['score']:.3f}" for r in pairs],
              "A ms": [f"{r['answers'][0]['latency_ms']:.2f}" for r in pairs],
              "B": [f"{plain(r['answers'][1]['label'])} {r['answers'][1]['score']:.3f}" for r in pairs],
              "B ms": [f"{r['answers'][1]['latency_ms']:.2f}" for r in pairs],
              "same top-1": ["yes" if s else "NO" for s in same]}, hide_index=True)
    mean = [sum(r["answers"][k]["latency_ms"] for r in pairs) / len(pairs) for k in (0, 1)]
    st.markdown(f"Top-1 agreement **{sum(same)}/{len(pairs)}** · mean latency A {mean[0]:.2f} ms, "
                f"B {mean[1]:.2f} ms")


def show_detection_comparison(pairs: list[dict[str, Any]]) -> None:
    """Two detectors on the same images: box counts, latencies and how many of A's boxes B
    also gave (same label, IoU >= 0.5), at the page's thresholds."""
    st.subheader(f"A vs B on {len(pairs)} images")
    a, b = ([r["answers"][k]["detections"] for r in pairs] for k in (0, 1))
    shared = [found(x, y) for x, y in zip(a, b)]
    st.table({"image": [plain(r["image"]) for r in pairs],
              "A boxes": [", ".join(plain(d["label"]) for d in x) or "-" for x in a],
              "A ms": [f"{r['answers'][0]['latency_ms']:.2f}" for r in pairs],
              "B boxes": [", ".join(plain(d["label"]) for d in y) or "-" for y in b],
              "B ms": [f"{r['answers'][1]['latency_ms']:.2f}" for r in pairs],
              "A's boxes B also gives": [f"{s}/{len(x)}" for s, x in zip(shared, a)]}, hide_index=True)
    mean = [sum(r["answers"][k]["latency_ms"] for r in pairs) / len(pairs) for k in (0, 1)]
    st.markdown(f"Box agreement **{sum(shared)}/{sum(map(len, a))}** of A's boxes (B has "
                f"{sum(map(len, b))}) · mean latency A {mean[0]:.2f} ms, B {mean[1]:.2f} ms")


def sidebar_settings(models: Sequence[DemoModel]) -> dict[str, Any]:
    sb = st.sidebar
    sb.header("Answers")
    classifiers = [m for m in models if m.task == "classification"]
    k = min((len(m.labels) for m in classifiers), default=1)
    topk = sb.slider("Top-k", 1, min(10, k), min(TOPK, k), key="topk") if k > 1 else 1
    tta = "none"
    if classifiers and sb.checkbox("Test-time augmentation", key="tta_on",
                                   help="average the probabilities over mirrored (and cropped) views "
                                        "of each image (d2l 14.1); mirroring suits objects, not text"):
        tta = sb.radio("Views", ["flip", "flip_crop"], key="tta", horizontal=True,
                       format_func=lambda m: {"flip": "flip (2)", "flip_crop": "flip + 5 crops (10)"}[m])
    detection = None
    detectors = [m for m in models if m.task == "detection"]
    if detectors:
        baked = [file_nms(m) for m in detectors]
        floor = max(float(n.get("score_threshold", 0.0)) for n in baked)
        score = max(floor, SCORE_THRESHOLD)   # where `serving detect` filters; the floor stays reachable
        iou = min(float(n.get("iou_threshold", 1.0)) for n in baked)
        own = "; ".join(f"{slot}: score > {n.get('score_threshold', '?')}, IoU {n.get('iou_threshold', '?')}"
                        for slot, n in zip(SLOTS, baked))
        own = plain(own)
        sb.caption(f"NMS inside the file ({own}): the sliders act on the boxes it returns.")
        detection = {
            "score_threshold": sb.slider(
                "Score threshold", 0.0, 1.0, score, 0.01, key="score",
                help=f"keeps the file's boxes scoring above this; starts at {SCORE_THRESHOLD}, where "
                     "`python -m serving detect` filters (lower values show the file's weaker boxes). The "
                     f"file already dropped every box at or below its own threshold ({own}), so values "
                     "below that bring nothing back."),
            "iou_threshold": sb.slider(
                "NMS IoU threshold", 0.05, 1.0, iou, 0.01, key="iou",
                help="runs NMS again (serving.nms: ONNX Runtime's NonMaxSuppression, class-aware) on "
                     "the file's boxes: a box overlapping a better one of its class by IoU above this "
                     f"is dropped. The file already ran NMS at its own IoU ({own}), so this can only be "
                     "stricter: values above it change nothing.")}
    return {"topk": topk, "tta": tta, "detection": detection}


def main(argv: Sequence[str], *, app_dir: str | os.PathLike) -> None:
    """The whole page; app_dir holds runs/ (default runs root) and samples/."""
    st.set_page_config(page_title="CNN mobile pipeline demo", layout="wide")
    st.title("CNN mobile pipeline · demo")
    st.caption("Runs the exported .tflite / .onnx files through `serving/` (LiteRT, ONNX Runtime) "
               "as an edge device would: same decoding, preprocessing and quantization.")
    app_dir = Path(app_dir)
    try:
        root = runs_root(argv, os.environ, app_dir / "runs")
    except DemoError as e:
        st.error(plain(str(e)))
        return
    models = choose_models(root)
    if not models:
        return
    settings = sidebar_settings(models)
    show_facts(models)
    images = choose_images(app_dir / "samples", models)
    if not images:
        st.info("Upload one or more images, or pick samples, to see the answers.")
        return
    rows = run_images(models, images, settings)
    show_comparison(models, rows)
    doc = results_document(list(models), rows)
    st.download_button("Download results (JSON)", json.dumps(doc, indent=2), file_name="demo_results.json",
                       mime="application/json", key="dl-json")
