"""The export gate's MediaPipe Tasks check: does MediaPipe accept the .tflite, and answer as
serving does?

MediaPipe (the `mediapipe` wheel: ImageClassifier, ObjectDetector) cannot share the full venv:
it pins absl-py ~=2.3, tensorflow-model-optimization ~=1.2. It lives in a venv of its own,
MEDIAPIPE_VENV (made by `make setup`), and runs in a subprocess (mediapipe_runner.py) on the
gate's test images; the task compares its answers with serving's (Task.parity). The verdict is
one manifest/report cell: "pass", "fail: why" or "n/a: why" (a grayscale model: MediaPipe's
image tasks take 3 channels only; no MediaPipe venv).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.workers import ROOT

MEDIAPIPE_VENV = ROOT / ".venv-mediapipe"
RUNNER = Path(__file__).with_name("mediapipe_runner.py")
UPSCALE = 8          # see mediapipe_runner: the image MediaPipe gets is 8x the model input
SAMPLES = 200        # the first test images MediaPipe answers (the gate's whole split is serving's)
TIMEOUT_S = 600
NEEDS_RGB = "n/a: MediaPipe needs 3 channels (train with model.input_shape=H,W,3)"


def python() -> Path | None:
    """The MediaPipe venv's interpreter ($MEDIAPIPE_PYTHON or MEDIAPIPE_VENV), None if absent."""
    path = Path(os.environ.get("MEDIAPIPE_PYTHON") or MEDIAPIPE_VENV / "bin" / "python")
    return path if path.is_file() else None


def run(path: Path, task: str, images: np.ndarray) -> dict[str, Any]:
    """MediaPipe's answers for the first SAMPLES of uint8 images (N, H, W, C) (mediapipe_runner's
    output), or
    {"na": why} when MediaPipe cannot be asked, {"error": why} when it refuses the file."""
    if images.shape[-1] != 3:
        return {"na": NEEDS_RGB}
    exe = python()
    if exe is None:
        return {"na": f"n/a: no MediaPipe venv ({MEDIAPIPE_VENV.name}: make setup makes it)"}
    with tempfile.TemporaryDirectory(prefix="cnn-mediapipe-") as tmp:
        job = {"model": str(Path(path).resolve()), "task": task, "images": f"{tmp}/images.npy",
               "upscale": UPSCALE, "out": f"{tmp}/out.json"}
        np.save(job["images"], np.ascontiguousarray(images[:SAMPLES], np.uint8))
        Path(tmp, "job.json").write_text(json.dumps(job))
        try:
            proc = subprocess.run([str(exe), str(RUNNER), f"{tmp}/job.json"], capture_output=True,
                                  text=True, timeout=TIMEOUT_S, cwd=tmp)
        except subprocess.TimeoutExpired:
            return {"error": f"MediaPipe did not finish in {TIMEOUT_S} s"}
        out = Path(job["out"])
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            return {"error": f"MediaPipe crashed: {tail}"}
        return json.loads(out.read_text())


def verdict(result: dict[str, Any], share: float | None, need: float, what: str) -> tuple[str, list[str]]:
    """(the manifest's "mediapipe" cell, gate failure reasons) from run()'s result and the share
    of serving's answers MediaPipe reproduced (`what` names them)."""
    if "na" in result:
        return result["na"], []
    if "error" in result:
        why = f"MediaPipe refuses the file: {result['error']}"
        return f"fail: {why}", [why]
    if share is not None and share < need:
        why = (f"MediaPipe reproduces {share:.3f} of serving's {what} < {need:.3f} "
               "(gate.mediapipe / gate.mediapipe_int8)")
        return f"fail: {why}", [why]
    return "pass", []
