"""Serving on an edge install: `pip install .[edge]` (numpy, Pillow, LiteRT, ONNX Runtime) is
enough to load, verify and run the exported .tflite/.onnx files and the `cnn-serve` CLI, and
TensorFlow, Keras and onnx do not even exist here. Runs only in that venv (make test-edge)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from margins import at_least, at_most

import serving
from serving.images import load_image
from serving.metadata import ArtifactError

FLOAT = ("model_fp32.tflite", "model.onnx")
INT8 = ("model_int8.tflite", "model_int8_uint8io.tflite")
CLI = Path(sys.executable).with_name("cnn-serve")   # the installed console script


@pytest.fixture(scope="module")
def files(edge_files):
    images = sorted((edge_files / "images").iterdir())
    pixels = np.stack([load_image(p, size=(32, 32), channels=3) for p in images])
    return edge_files / "export", images, pixels, np.load(edge_files / "reference.npy")


@pytest.mark.parametrize("module", ["tensorflow", "keras", "tf_keras", "onnx", "tf2onnx", "streamlit"])
def test_the_training_stack_does_not_exist_here(module):
    assert importlib.util.find_spec(module) is None, f"{module} is installed in the edge venv"


@pytest.mark.parametrize("name", FLOAT + INT8)
def test_each_file_gives_the_keras_answer(files, name):
    export, _, pixels, reference = files
    runner = serving.load(export / name)                  # manifest.json beside it is checked
    probs = runner.predict(pixels)
    assert probs.shape == reference.shape
    if name in FLOAT:
        np.testing.assert_allclose(probs, reference, atol=1e-4)
    else:   # int8: the same answers, probabilities within the quantization error. On average:
        # the largest |dp| is one image's confident softmax moving, 0.18-0.23 between machines
        # 0 or 1 of the 24 images flipped over seeds 0-1 x native/AVX2 (bench/test_margins.py):
        # 0.9 left 1.4 images of headroom; 0.8 keeps 2x the spread, and a broken file flips most
        at_least(f"{name} agreement", (probs.argmax(1) == reference.argmax(1)).mean(), 0.8)
        at_most(f"{name} mean |dp|", np.abs(probs - reference).mean(), 0.02)
    assert not {"tensorflow", "keras", "onnx"} & set(sys.modules)


def test_a_damaged_file_without_its_manifest_is_refused(files, tmp_path):
    export = files[0]
    for name in FLOAT + INT8:
        data = bytearray((export / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(data))
        with pytest.raises(ArtifactError, match="changed or damaged"):
            serving.load(tmp_path / name)


def test_a_keras_file_is_refused_with_what_to_install(files):
    with pytest.raises(ArtifactError, match=r"model\.keras: serving a \.keras file needs keras, which is "
                                            r"not installed \(pip install 'cnn-mobile-pipeline\[train\]'\)"):
        serving.load(files[0] / "model.keras")


def test_installed_cli_classifies_and_benchmarks(files, tmp_path):
    export, images, _, reference = files
    copy = tmp_path / "device"                      # as copied to a device: no manifest
    copy.mkdir()
    shutil.copy(export / "model_int8.tflite", copy)
    r = subprocess.run([str(CLI), "predict", f"model={copy / 'model_int8.tflite'}",
                        f"source={images[0].parent}", "json=true", "topk=1"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(row["file"]).name for row in rows] == [p.name for p in images]
    labels = serving.load(export / "model_fp32.tflite").labels
    agree = np.mean([row["label"] == labels[i] for row, i in zip(rows, reference.argmax(1))])
    at_least("edge CLI int8 agreement", agree, 0.8)   # as above: 0 or 1 of 24 flipped
    assert not r.stderr.strip(), r.stderr          # quiet: no INFO lines from the runtimes

    r = subprocess.run([str(CLI), "benchmark", f"model={export / 'model.onnx'}", "runs=5", "warmup=1",
                        "json=true"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["latency_ms"]["p50"] > 0
