"""A tiny exported run for the demo tests: <root>/tiny/export/ with a float and a full-int8
TFLite file, real artifact metadata (serving.metadata) and a manifest (serving.manifest)
whose parity figures are measured here against the Keras model.

The model is a LeNet (width 0.25, ReLU, 32x32x3) fitted for a few seconds on the four
shape samples in samples/, so it names circle.png "circle": the page then shows answers a
test can check. Built once per session and shared by test_app.py and test_browser.py.
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
            data = tflite.convert(model, spec, options, calibration=calibration, workdir=export)
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
