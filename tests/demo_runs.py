"""Tiny exported runs for the demo tests. build_run: <root>/tiny/export/ with a float and a
full-int8 TFLite classifier, real artifact metadata (serving.metadata) and a manifest
(serving.manifest) whose parity figures are measured here against the Keras model.
build_det_run: <root>/det/, a tiny SSD really trained on the sample scenes' distribution and
exported by pipeline.export (decoding + NMS inside each file).

The model is a LeNet (width 0.25, ReLU, 32x32x3) fitted for a few seconds on the four
shape samples in samples/, so it names circle.png "circle": the page then shows answers a
test can check. Built once per session and shared by test_app.py and test_browser.py (the
detector likewise finds the objects of samples/scene_*.png).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

LABELS = ("circle", "square", "triangle", "star")
INPUT_SHAPE = (32, 32, 3)
RUN = "tiny"
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
FILES = {"tflite_fp32": ("model_fp32.tflite", {}),
         "tflite_int8": ("model_int8_uint8io.tflite", {"io": "uint8"})}


def sample_images(names: tuple[str, ...] = LABELS) -> np.ndarray:
    """uint8 (len(names), 32, 32, 3): samples/<name>.png at the model size."""
    from serving.images import load_image

    return np.stack([load_image(SAMPLES / f"{n}.png", size=INPUT_SHAPE[:2], channels=3) for n in names])


def _fit(model, seed: int = 0):
    """Fit the four shape samples (label = file name) with pixel noise, 20 quick epochs."""
    import keras

    rng = np.random.default_rng(seed)
    x = np.repeat(sample_images().astype(np.float32), 8, axis=0)                  # (32, 32, 32, 3)
    x = np.clip(x + rng.normal(0, 6, x.shape), 0, 255).astype(np.float32)
    y = np.repeat(np.arange(len(LABELS)), 8)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    return x.astype(np.uint8)


def build_run(root: Path) -> Path:
    """Write root/tiny/{model.keras, export/...}; returns the export dir (kept if present)."""
    export = root / RUN / "export"
    if (export / "manifest.json").is_file():
        return export
    import keras

    import serving
    from models import create_model, get_contract, save_model
    from pipeline.export import tflite
    from pipeline.export.formats import FORMATS, quantization_record
    from pipeline.tasks import get_task
    from serving.manifest import sha256_file, write_manifest
    from serving.metadata import build_metadata, tensor_spec

    keras.utils.set_random_seed(0)
    model = create_model("lenet", num_classes=len(LABELS), input_shape=INPUT_SHAPE, labels=LABELS,
                         width=0.25, activation="relu")
    calibration = _fit(model)
    keras_path = save_model(model, root / RUN / "model.keras")
    source = {"model": keras_path.name, "sha256": sha256_file(keras_path), "config": None}
    test = sample_images()
    reference = np.asarray(model.predict_on_batch(test.astype(np.float32)))     # (4, 4)
    calib_info = {"source": "samples/ shapes + noise", "samples": len(calibration)}
    rows = []
    for fmt, (name, options) in FILES.items():
        spec = FORMATS[fmt]
        with warnings.catch_warnings():   # uint8 I/O without input statistics: expected here
            warnings.filterwarnings("ignore", "Statistics for quantized inputs")
            data = tflite.convert(model, spec, options, calibration=calibration, workdir=export,
                                  task=get_task("classification"))
        inp, out = tflite.describe_io(data)
        meta = build_metadata(format=fmt, contract=get_contract(model), input=tensor_spec(**inp),
                              output=tensor_spec(**out), quantization=quantization_record(spec, calib_info),
                              source=source)
        export.mkdir(parents=True, exist_ok=True)
        (export / name).write_bytes(tflite.embed(data, meta))
        probs = serving.load(export / name, manifest=None).predict(test)
        rows.append({"file": name, "format": fmt, "parity": {
            "samples": len(test), "max_abs_diff": float(np.abs(probs - reference).max()),
            "top1_agreement": float(np.mean(probs.argmax(1) == reference.argmax(1))),
            "accuracy": float(np.mean(probs.argmax(1) == np.arange(len(LABELS)))),
            "accuracy_keras": float(np.mean(reference.argmax(1) == np.arange(len(LABELS)))),
            "passed": True}})
    write_manifest(export, source, rows)
    return export


# --------------------------------------------------------------------- a tiny real detector

DET_RUN = "det"
DET_LABELS = ("circle", "square", "triangle")
DET_SHAPE = (64, 64, 3)
DET_FORMATS = "tflite_fp32,onnx"    # two files to compare; tflite_int8 would add ~30 s of calibration
DET_FILES = ("model.onnx", "model_fp32.tflite")   # the order the catalog lists them


def scene_truth() -> dict[str, dict]:
    """samples/scenes.json: scene file -> {"size", "objects": [{label, box}]}."""
    import json

    return json.loads((SAMPLES / "scenes.json").read_text())


def make_samples_module():
    """samples/make_samples.py (a script, not a package module) loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _det_training_split():
    """Scenes like the samples (samples/make_samples.scene_config) plus the three sample scenes
    themselves, repeated: a few seconds of fitting then finds their objects."""
    import dataclasses

    from pipeline.tasks.detection.data import DetSplit
    from pipeline.tasks.detection.scenes import generate_scenes
    from serving.images import load_image

    cfg = make_samples_module().scene_config()
    extra = generate_scenes(dataclasses.replace(cfg, images=48), seed=1, size=DET_SHAPE[:2])
    truth = scene_truth()
    images, boxes, labels = list(extra.images), list(extra.boxes), list(extra.labels)
    for _ in range(8):
        for name, t in truth.items():
            images.append(load_image(SAMPLES / name, size=DET_SHAPE[:2], channels=3))
            w, h = t["size"]
            boxes.append(np.array([o["box"] for o in t["objects"]], np.float32) / [w, h, w, h])
            labels.append(np.array([DET_LABELS.index(o["label"]) for o in t["objects"]], np.int32))
    return DetSplit(np.stack(images), [b.astype(np.float32) for b in boxes], labels)


def build_det_run(root: Path, epochs: int = 25) -> Path:
    """root/det/{model.keras, config.yaml, export/}: a tiny SSD (resnet18 width 0.25, conv head,
    64x64; ~13 s of its CPU time is the first step's graph building, mobilenetv2 took twice that)
    fitted on _det_training_split (pipeline.tasks.detection.train's anchor targets and loss), exported by
    pipeline.export to tflite_fp32 and onnx with the detection gate relaxed (the model is tiny;
    the gate still measures and records every number). It finds every object of the three sample
    scenes at score ~1 (it has seen them) and is unsure on new ones (a mirrored scene: scores
    0.1-0.98, overlapping boxes of one class); the file's own score threshold is a low 0.1 so the
    page's sliders have boxes to act on. Returns the export dir (kept if present)."""
    export_dir = root / DET_RUN / "export"
    if (export_dir / "manifest.json").is_file():
        return export_dir
    import keras
    import yaml

    from models import anchors_of, create_detector, get_contract, save_model
    from pipeline.config import load_config
    from pipeline.export import ExportConfig, export
    from pipeline.tasks.detection.train import DetectionConfig, make_dataset, make_loss

    keras.utils.set_random_seed(0)
    model = create_detector("ssd", backbone="resnet18", num_classes=len(DET_LABELS), input_shape=DET_SHAPE,
                            width=0.25, head_channels=16, score_threshold=0.1, nms_iou=0.45,
                            max_detections=20, labels=DET_LABELS)
    split = _det_training_split()
    ds = make_dataset(split, anchors_of(get_contract(model)), batch_size=len(split), training=False,
                      augment=None, seed=0, match_iou=0.5, max_objects=0)
    x, y = (t.numpy() for t in next(iter(ds)))          # targets once: (N, 64, 64, 3), (N, A, 5)
    model.compile(keras.optimizers.Adam(3e-3), make_loss(DetectionConfig(), len(DET_LABELS)),
                  jit_compile=False)
    model.fit(x, y, epochs=epochs, batch_size=24, verbose=0)
    run = root / DET_RUN
    save_model(model, run / "model.keras")
    scenes = make_samples_module().scene_config()     # the gate's held-out scenes: the same kind
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {
        "source": "shapes_det", "val_split": 0.1, "test_split": 0.5,
        "shapes_det": {"images": 16, "size": scenes.size, "max_objects": scenes.max_objects,
                       "object_size": list(scenes.object_size), "noise": scenes.noise}}}))
    export(load_config(ExportConfig, [f"model={run}", f"formats={DET_FORMATS}", "gate.det_max_drop=1",
                                      "verbose=false"]))
    return export_dir
