"""Compression across the registry, in processes of their own (tfmot): every registered family
compresses with every method or fails naming the layer (tests/compress_sweep.py), and a QAT
graph with zero per-channel scales still converts to a full-int8 file."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from train_helpers import ROOT, env

from models import list_models

ZERO_SCALES = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
import tensorflow_model_optimization  # noqa: F401  (tf_keras for the whole process)
import tf_keras
from compress_sweep import _export_qat_int8
from models import build_twin, create_model
from pipeline.compress import tfmot_ops as ops
keras3 = create_model("resnet18", num_classes=3, input_shape=(32, 32, 3), width=0.25)
zero_gammas = sum(int((l.get_weights()[0] == 0).sum()) for l in keras3.layers if l.name.endswith("_2_bn"))
stem = keras3.get_layer("stem_conv")
w = stem.get_weights()
w[0][..., 0] = 0.0   # one output channel pruned away
stem.set_weights(w)
twin = build_twin(keras3, tf_keras)
plan = ops.quantize_plan(twin)
model = ops.wrap_qat(twin, plan, per_tensor=False, preserve_sparsity=False)
x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
_export_qat_int8(model, keras3, plan, x, Path(sys.argv[2]))
print("converted", zero_gammas)
"""


def test_qat_int8_file_converts_with_zero_gammas_and_a_zero_kernel_channel(tmp_path):
    """A per-channel scale of 0 makes the converter fail ("scale out of expressed type range")
    and leave float ops behind: an untrained resnet18 has zero-init residual BN gammas (exactly
    0, folded into its kernels), and its stem has one output channel of zeros here. Its QAT
    graph must still convert to a full-int8 file (found by the registry sweep on resnet50)."""
    r = subprocess.run([sys.executable, "-c", ZERO_SCALES, str(ROOT / "tests"), str(tmp_path)], cwd=ROOT,
                       env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    words = r.stdout.split()
    assert words[-2] == "converted" and int(words[-1]) >= 8   # resnet18: 8 blocks, gamma 0 everywhere


# ---- every registered family: compresses with every method, or fails naming the layer -----

QUICK_SWEEP = ["mobilenetv3_small"]   # Multiply, Rescaling, depthwise, BN; the rest: -m slow


def _sweep(names, tmp_path):
    out = tmp_path / "sweep.json"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "compress_sweep.py"), str(out), *names],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    return _sweep(QUICK_SWEEP, tmp_path_factory.mktemp("sweep"))


@pytest.mark.slow   # ~1.5 min alone, 5 min on a loaded 2-core machine; resnet18/lenet_bn above
@pytest.mark.parametrize("name", QUICK_SWEEP)   # cover the same methods end to end
def test_family_compresses_with_every_method(quick_sweep, name):
    assert quick_sweep[name] == {"prune": "ok", "prune_2:4": "ok", "qat": "ok", "prune_qat": "ok"}


@pytest.mark.slow   # 1-10 min per family on 2 cores (one process each)
@pytest.mark.parametrize("name", list_models())
def test_every_registered_family_compresses_or_names_the_layer(tmp_path, name):
    outcomes = _sweep([name], tmp_path)[name]
    assert set(outcomes) == {"prune", "prune_2:4", "qat", "prune_qat"}
    for method, outcome in outcomes.items():
        assert outcome == "ok" or outcome.startswith(("qat: layer '", "prune.structure=2:4: layer ")), (
            method, outcome)
