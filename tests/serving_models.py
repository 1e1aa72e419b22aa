"""Real model files for the serving tests, built once per test process.

A tiny ResNet-18 (width 0.25, 32x32x3, 10 digit labels) trained for three quick epochs, so
its probabilities are spread and depend on the image (an untrained net answers ~1/K for
everything, where a top-1 comparison would mean nothing; a tiny MobileNetV2 stays there after
three epochs). It is saved as .keras, converted in the test with
tf.lite.TFLiteConverter (fp32, full-int8 with uint8 I/O, full-int8 with int8 I/O, fixed
batch 1) and Keras' ONNX export, and each file gets its artifact metadata embedded.
Images are real: scikit-learn's handwritten digits (8x8) written as PNG files.
"""
from __future__ import annotations

import atexit
import functools
import io
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

SIZE = 32
LABELS = [str(i) for i in range(10)]
FAMILY = "resnet18"


EPOCHS = 8


def train_briefly(model, pixels: np.ndarray, targets: np.ndarray) -> None:
    """Eight quick epochs (no XLA: compiling costs more than the training here), so the model
    gives confident, image-dependent answers: held-out accuracy 0.96 and mean top probability
    0.95-0.98 over three runs. Three epochs gave 0.58-0.92 and 0.45-0.52 from run to run
    (multi-threaded kernels are not bit-reproducible), too close to the tests' bars."""
    import keras
    from margins import seed

    keras.utils.set_random_seed(seed())
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  jit_compile=False)
    model.fit(pixels.astype(np.float32), targets, epochs=EPOCHS, batch_size=50, verbose=0)


def digit_pngs(folder: Path, indices: range) -> list[Path]:
    """scikit-learn digits as 8x8 grayscale PNG files (0..16 scaled to 0..255), named
    digit<index>_<label>.png."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    paths = []
    for i in indices:
        img = Image.fromarray((digits.images[i] * (255 / 16)).astype(np.uint8), "L")
        paths.append(folder / f"digit{i:04d}_{digits.target[i]}.png")
        img.save(paths[-1])
    return paths


def label_of(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def representative(images: np.ndarray):
    def gen():
        for img in images:
            yield [img[None].astype(np.float32)]   # (1, H, W, C) pixels 0..255
    return gen


def to_tflite(model, *, io_dtype=None, calibration=None, fixed_batch=False) -> bytes:
    import tensorflow as tf

    if fixed_batch:   # the same layers behind an input of batch 1: tensors [1, H, W, C]
        import keras

        inputs = keras.Input(batch_shape=(1, *model.inputs[0].shape[1:]))
        model = keras.Model(inputs, model(inputs))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:   # full integer: int8 weights and activations
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative(calibration)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = io_dtype
    return conv.convert()


def with_metadata(raw: bytes, suffix: str, fmt: str, contract, quant: dict | None = None) -> bytes:
    """Embed artifact metadata whose input/output entries describe the file's real tensors."""
    from serving.backends import open_backend
    from serving.metadata import build_metadata, embed_tflite_metadata

    backend = open_backend(raw, suffix=suffix)
    meta = build_metadata(format=fmt, contract=contract, input=backend.input.to_dict(),
                          output=backend.output.to_dict(), quantization=quant,
                          source={"model": "model.keras", "sha256": None, "config": None})
    if suffix == ".tflite":
        return embed_tflite_metadata(raw, meta)
    import onnx

    from serving.metadata import embed_onnx_metadata

    return embed_onnx_metadata(onnx.load_model_from_string(raw), meta)


@functools.cache
def artifacts() -> SimpleNamespace:
    """Build everything once; the folder is removed when the process exits."""
    import tensorflow as tf

    from models import create_model, get_contract, save_model
    from serving.images import load_image
    from serving.manifest import write_manifest

    root = Path(tempfile.mkdtemp(prefix="serving-test-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    train = digit_pngs(root / "train", range(24, 424))
    images = digit_pngs(root / "images", range(24))   # held out: the test images
    decode = lambda paths: np.stack([load_image(p, size=(SIZE, SIZE), channels=3) for p in paths])  # noqa: E731
    pixels = decode(images)                           # (24, 32, 32, 3) uint8

    model = create_model(FAMILY, num_classes=10, input_shape=(SIZE, SIZE, 3), width=0.25,
                         labels=LABELS)
    train_pixels = decode(train)                      # (400, 32, 32, 3)
    train_briefly(model, train_pixels, np.array([label_of(p) for p in train]))
    contract = get_contract(model)
    export = root / "export"
    save_model(model, export / "model.keras")

    int8 = {"weights": "int8", "activations": "int8",
            "calibration": {"source": "digits", "samples": 32}}
    fp32 = to_tflite(model)
    files = {
        "model_fp32.tflite": with_metadata(fp32, ".tflite", "tflite_fp32", contract),
        "model_int8_uint8io.tflite": with_metadata(
            to_tflite(model, io_dtype=tf.uint8, calibration=train_pixels[:32]), ".tflite", "tflite_int8",
            contract, int8),
        "model_int8.tflite": with_metadata(
            to_tflite(model, io_dtype=tf.int8, calibration=train_pixels[:32]), ".tflite", "tflite_int8",
            contract, int8),
        "model_fp32_batch1.tflite": with_metadata(to_tflite(model, fixed_batch=True), ".tflite",
                                                  "tflite_fp32", contract),
    }
    onnx_tmp = root / "tmp.onnx"
    model.export(str(onnx_tmp), format="onnx", verbose=False)
    files["model.onnx"] = with_metadata(onnx_tmp.read_bytes(), ".onnx", "onnx", contract)
    for name, data in files.items():
        (export / name).write_bytes(data)
    formats = {"model.keras": "keras", "model.onnx": "onnx", "model_fp32.tflite": "tflite_fp32",
               "model_fp32_batch1.tflite": "tflite_fp32", "model_int8.tflite": "tflite_int8",
               "model_int8_uint8io.tflite": "tflite_int8"}
    write_manifest(export, {"model": "model.keras"},
                   [{"file": name, "format": fmt} for name, fmt in formats.items()])
    reference = np.asarray(model.predict(pixels, verbose=0))   # (24, 10) Keras probabilities
    return SimpleNamespace(root=root, export=export, images=images, pixels=pixels,
                           contract=contract, reference=reference, model=model,
                           raw_fp32=fp32)


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()
