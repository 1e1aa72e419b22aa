"""What the demo page does with models and images, without any Streamlit.

    check_image(name, data)        -> decoded PIL image (size + pixel limits, ImageError)
    store_upload(name, data, ...)  -> an uploaded .tflite/.onnx (and manifest) saved on disk
    open_upload(name, data, ...)   -> DemoModel of an upload; its temp files are gone afterwards
    open_model(path, manifest)     -> DemoModel: serving.Runner + facts (warmed up once)
    classify(model, name, data)    -> one answer: label, score, top-k, latency
    detect(model, name, data)      -> one detection result (boxes, scores, labels, latency)
    file_nms(model)                -> the NMS settings baked into a detector file
    results_document(models, rows) -> the JSON the page offers for download
Models run through serving.load: the exported file itself, as on an edge device.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import serving
from models.atomic import write_bytes
from serving.demo.catalog import human_size, parity_line
from serving.demo.settings import (
    LOAD_ERRORS,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_MANIFEST_BYTES,
    MAX_MODEL_BYTES,
    MODEL_SUFFIXES,
    DemoError,
    one_line,
)
from serving.images import ImageError, open_image
from serving.manifest import MANIFEST_NAME, find_entry
from serving.metadata import sha256_file

RESULTS_SCHEMA = "cnn-pipeline/demo-results/v1"
UPLOAD_DIR = Path(tempfile.gettempdir()) / "cnn-demo-uploads"


@dataclass
class DemoModel:
    """A loaded artifact. The lock serialises calls: Streamlit shares cached models between
    sessions (threads) and an interpreter must not run two inferences at once."""
    runner: Any                       # serving.Runner
    name: str                         # what the page calls it (run/file or uploaded name)
    size_bytes: int
    sha256: str
    verified: bool                    # sha256 checked against a manifest
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def task(self) -> str:
        return self.runner.contract.task

    @property
    def labels(self) -> tuple[str, ...]:
        return self.runner.labels

    @property
    def parity(self) -> dict[str, Any]:
        entry = find_entry(self.runner.manifest, self.runner.path.name) if self.runner.manifest else None
        return dict((entry or {}).get("parity") or {})


def check_image(name: str, data: bytes, *, max_bytes: int = MAX_IMAGE_BYTES,
                max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an upload (first frame, EXIF orientation) within the limits; ImageError names it."""
    if len(data) > max_bytes:
        raise ImageError(f"{name}: {human_size(len(data))} is over the upload limit of "
                         f"{human_size(max_bytes)}")
    if not data:
        raise ImageError(f"{name}: empty file")
    return open_image(data, name=name, max_pixels=max_pixels)


def _safe_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in base) or "model"


def upload_key(data: bytes, manifest: bytes | None = None) -> str:
    return hashlib.sha256(data + b"\0" + (manifest or b"")).hexdigest()[:24]


def store_upload(name: str, data: bytes, manifest: bytes | None = None, *,
                 base: Path = UPLOAD_DIR) -> tuple[Path, Path | None]:
    """Save an uploaded model (and its manifest.json) under base/<sha256>/ so serving.load
    can open it by path; returns (model path, manifest path or None). DemoError on a wrong
    suffix, an empty or too large file."""
    clean = _safe_name(name)
    if Path(clean).suffix.lower() not in MODEL_SUFFIXES:
        raise DemoError(f"{name}: not a model file the demo runs (upload {' or '.join(MODEL_SUFFIXES)})")
    if not data:
        raise DemoError(f"{name}: empty file")
    if len(data) > MAX_MODEL_BYTES:
        raise DemoError(f"{name}: {human_size(len(data))} is over the model upload limit of "
                        f"{human_size(MAX_MODEL_BYTES)}")
    if manifest is not None and len(manifest) > MAX_MANIFEST_BYTES:
        raise DemoError(f"{MANIFEST_NAME}: over the limit of {human_size(MAX_MANIFEST_BYTES)}")
    folder = base / upload_key(data, manifest)
    path = folder / clean
    if not path.is_file():
        write_bytes(path, data)
    manifest_path = None
    if manifest is not None:
        manifest_path = write_bytes(folder / MANIFEST_NAME, manifest)
    return path, manifest_path


def open_model(path: Path, manifest: Path | str | None = "auto", *, name: str | None = None) -> DemoModel:
    """serving.load the file (checking it against its manifest) and run one blank image
    through it, so the first latency the page shows is not the interpreter's set-up."""
    runner = serving.load(path, manifest=manifest, threads=1)
    blank = np.zeros((1, *runner.contract.input_shape), np.uint8)
    runner.run_batch(blank)
    verified = runner.manifest is not None
    entry = find_entry(runner.manifest, path.name) if verified else None
    sha = entry["sha256"] if entry else sha256_file(path)
    return DemoModel(runner=runner, name=name or path.name, size_bytes=path.stat().st_size,
                     sha256=sha, verified=verified)


def open_upload(name: str, data: bytes, manifest: bytes | None = None, *,
                base: Path | None = None) -> DemoModel:
    """Load an uploaded model (and check it against its manifest, when given) from a private
    temp folder that is removed again at once: LiteRT maps the file and ONNX Runtime reads it,
    so neither needs it afterwards. A refused upload is one DemoError naming the file as the
    user called it, never the server-side path it was saved under."""
    base = UPLOAD_DIR if base is None else base
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=base))
    try:
        path, manifest_path = store_upload(name, data, manifest, base=folder)
        try:
            return open_model(path, str(manifest_path) if manifest_path else None, name=name)
        except LOAD_ERRORS as e:
            message = one_line(e).replace(str(path), name)
            if manifest_path is not None:
                message = message.replace(str(manifest_path), MANIFEST_NAME)
            raise DemoError(message.replace(str(folder), "<upload>")) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _named(name: str, data: bytes) -> io.BytesIO:
    src = io.BytesIO(data)
    src.name = name   # serving names the image by it in results and errors
    return src


def classify(model: DemoModel, name: str, data: bytes, topk: int, tta: str = "none") -> dict[str, Any]:
    """One image through one model: label, score, top-k pairs, latency (decode + preprocess +
    model + postprocess, all views with tta) and model_ms (the last interpreter call alone)."""
    with model.lock:
        pred = model.runner.classify([_named(name, data)], topk=topk, tta=tta)[0]
        model_ms = model.runner.backend.last_invoke_s * 1e3
    return {"model": model.name, "label": pred.label, "score": round(pred.score, 6),
            "topk": [[label, round(p, 6)] for label, p in pred.topk], "tta": tta,
            "latency_ms": round(pred.latency_ms, 3), "model_ms": round(model_ms, 3)}


def detect(model: DemoModel, name: str, data: bytes) -> dict[str, Any]:
    """One image through a detector (serving.Runner.detect: the file's own decoding + NMS):
    {boxes (pixels of the original image), scores, labels, classes, latency_ms, model_ms}."""
    with model.lock:
        result = model.runner.detect([_named(name, data)])[0].to_dict()
        result["model_ms"] = model.runner.backend.last_invoke_s * 1e3
    return result


def file_nms(model: DemoModel) -> dict[str, Any]:
    """score_threshold, iou_threshold, max_detections of a detector as its file states them
    (the metadata's "detection" block; the contract's for a file without one)."""
    block = model.runner.metadata.get("detection") or {}
    nms = block.get("nms") or model.runner.contract.detection.nms_block()
    return {k: nms[k] for k in ("score_threshold", "iou_threshold", "max_detections") if k in nms}


def nms_line(model: DemoModel) -> str:
    nms = file_nms(model)
    if not nms:
        return "not stated in the file"
    op = (model.runner.metadata.get("detection") or {}).get("nms_op", "NMS")
    return (f"score > {nms.get('score_threshold', '?')}, IoU > {nms.get('iou_threshold', '?')} "
            f"suppresses, at most {nms.get('max_detections', '?')} boxes ({op}, class-aware)")


def model_facts(model: DemoModel) -> list[tuple[str, str]]:
    """(fact, value) rows for the page: what the file is and how it was checked."""
    meta, r = model.runner.metadata, model.runner

    def tensor(spec: Any) -> str:
        text = f"{spec.dtype} {list(spec.shape)}"
        return text + (f", scale {spec.scale:.4g}, zero point {spec.zero_point}" if spec.quantized else "")

    quant = meta.get("quantization") or {}
    calib = quant.get("calibration")
    rows = [
        ("format", f"{meta['format']} ({r.backend.name}, {r.backend.threads or 1} thread)"),
        ("file", f"{model.name} · {human_size(model.size_bytes)}"),
        ("sha256", model.sha256[:16] + "…" + (" · matches manifest.json" if model.verified
                                             else " · no manifest check")),
        ("task", f"{r.contract.task}, {len(r.labels)} labels"),
        ("input", tensor(r.input)),
        ("output", "boxes (1, K, 4) x0, y0, x1, y1 in 0..1, scores, classes, count"
         if r.task == "detection" else tensor(r.output)),
        ("quantization", f"weights {quant.get('weights', '?')}, activations {quant.get('activations', '?')}"
         + (f", calibrated on {calib.get('samples', '?')} images ({calib.get('source', '?')})"
            if isinstance(calib, dict) else "")),
        ("parity", parity_line(model.parity)),
    ]
    if model.task == "detection":
        rows.append(("NMS in the file", nms_line(model)))
    p = model.parity
    if "map50" in p and "map50_keras" in p:
        rows.append(("mAP@.5", f"file {p['map50']:.3f} vs Keras {p['map50_keras']:.3f} "
                               f"on {p.get('samples', '?')} test images"))
    if "accuracy" in p and "accuracy_keras" in p:
        rows.append(("accuracy", f"file {p['accuracy']:.3f} vs Keras {p['accuracy_keras']:.3f} "
                                 f"on {p.get('samples', '?')} test images"))
    source = meta.get("source") or {}
    if source.get("model"):
        rows.append(("exported from", f"{source['model']} ({str(source.get('sha256') or '')[:12]}…)"))
    return rows


def results_document(models: list[DemoModel], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The downloadable JSON: which files answered, and every image's answers."""
    return {"schema": RESULTS_SCHEMA,
            "models": [{"name": m.name, "format": m.runner.format, "task": m.task,
                        "sha256": m.sha256, "verified": m.verified, "size_bytes": m.size_bytes,
                        "input": m.runner.input.to_dict(), "output": m.runner.output.to_dict(),
                        "parity": m.parity,
                        **({"nms": file_nms(m)} if m.task == "detection" else {})} for m in models],
            "images": rows}
