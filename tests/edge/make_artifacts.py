"""Write the files the edge suite serves: run with the FULL venv (TensorFlow present).

    .venv/bin/python tests/edge/make_artifacts.py OUT

OUT/export/   the exported files of tests/serving_models.py (fp32, int8, uint8-I/O int8 TFLite,
              ONNX, .keras) with their manifest.json
OUT/images/   the held-out digit PNGs they are checked on
OUT/reference.npy  the Keras model's probabilities for those images (24, 10)
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]   # tests/ (serving_models), the repo


def main(out: Path) -> None:
    from serving_models import artifacts

    art = artifacts()
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(art.export, staging / "export")
    (staging / "images").mkdir()
    for p in art.images:
        shutil.copy(p, staging / "images" / p.name)
    np.save(staging / "reference.npy", art.reference)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)   # all or nothing


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_artifacts.py OUT")
    main(Path(sys.argv[1]))
