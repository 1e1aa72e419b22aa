"""The edge suite runs in a venv made of `pip install .[edge]` alone (make test-edge): no
TensorFlow, no Keras, no onnx package. The files it serves are exported beforehand by the full
venv (FULL_PYTHON, default .venv/bin/python) with make_artifacts.py, or taken from
EDGE_ARTIFACTS when that names a folder it wrote."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def edge_files(tmp_path_factory) -> Path:
    given = os.environ.get("EDGE_ARTIFACTS")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("edge") / "files"
    full = os.environ.get("FULL_PYTHON", str(REPO / ".venv" / "bin" / "python"))
    if not Path(full).is_file():
        pytest.fail(f"FULL_PYTHON={full}: no such interpreter; the edge suite needs the full venv "
                    "to export its files first (make setup)")
    r = subprocess.run([full, str(REPO / "tests" / "edge" / "make_artifacts.py"), str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-3000:]
    return out
