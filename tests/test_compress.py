"""pipeline compress: magnitude pruning, QAT and pruning-preserving QAT with the real tfmot, on
tiny models for a few steps; bad options and unsupported layers fail before any work; a killed
compression resumes. No mocks of tfmot, TensorFlow or LiteRT."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from margins import at_least, at_most, gate_passed, seed
from train_helpers import ROOT, digits_source, env

from models.options import OptionError
from pipeline.__main__ import main
from pipeline.compress import CompressConfig, compress
from pipeline.compress.sparsity import model_sparsity
from pipeline.config import load_config
from tests.conftest import TEST_GATE

# the source runs' data: 3 classes x 40 generated 32x32 images
TINY_DATA = {"source": "shapes", "shapes": {"per_class": 40, "classes": 3, "size": 32}}


def _train_tiny(out, model, **options):
    """A tiny source run dir trained in-process (Keras 3, 2 epochs)."""
    from pipeline.train import TrainConfig, train

    over = ["data=shapes", "data.shapes.per_class=40", "data.shapes.classes=3", "data.shapes.size=32",
            f"model={model}", "batch_size=16", "augment=none", "epochs=2", "lr=0.003", "verbose=0",
            f"seed={seed()}", f"out={out}", *[f"model.{k}={v}" for k, v in options.items()]]
    return train(load_config(TrainConfig, over)).run_dir


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    return _train_tiny(tmp_path_factory.mktemp("tiny") / "src", "lenet_bn", width=0.5)


def _compress(*args):
    return compress(load_config(CompressConfig, list(args) + ["verbose=0"]))


@pytest.fixture(scope="module")
def pruned(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "run"
    return _compress(f"from={digits_run}", "method=prune", "prune.sparsity=0.75", "epochs=3",
                     f"out={out}")


@pytest.fixture(scope="module")
def qat(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat") / "run"
    return _compress(f"from={digits_run}", "method=qat", "epochs=1", f"out={out}")


@pytest.fixture(scope="module")
def pqat(pruned, tmp_path_factory):
    """Pruning-preserving QAT of the pruned run (from a pruned run prune_qat is that stage only)."""
    out = tmp_path_factory.mktemp("pqat") / "run"
    return _compress(f"from={pruned.run_dir}", "method=prune_qat", "epochs=1", f"out={out}")


# ---- options: checked before any work, one line with a did-you-mean -----------------------

@pytest.mark.parametrize("arg, expected", [
    ("prune.sparsity=1.2", "prune.sparsity must be in (0, 1) (the fraction of zeros, e.g. 0.75), got 1.2"),
    ("method=prun", "method: 'prun' is not one of 'prune', 'qat', 'prune_qat' (did you mean: prune"),
    ("epochz=3", "unknown key 'epochz' (did you mean: epochs"),
    ("prune.structure=2:8", "prune.structure: '2:8' is not one of 'unstructured', '2:4'"),
    ("mixed_precision=true", "compress trains on one device in float32"),
    ("ema=0.99", "drop mixed_precision, xla, strategy and ema"),
])
def test_bad_options_fail_before_work(tiny_source, tmp_path, capsys, arg, expected):
    out = tmp_path / "out"
    assert main(["compress", f"from={tiny_source}", arg, f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_source_is_one_line(tmp_path, capsys):
    assert main(["compress", f"from={tmp_path / 'nope'}", "method=qat"]) == 2
    err = capsys.readouterr().err
    assert "give a trained run dir (with model.keras) or a .keras file (no such path)" in err


def test_unsupported_layer_fails_before_training_naming_it(tmp_path):
    source = _train_tiny(tmp_path / "selu", "lenet", width=0.5, activation="selu")
    out = tmp_path / "out"
    with pytest.raises(OptionError) as e:
        _compress(f"from={source}", "method=qat", f"out={out}")
    assert str(e.value).startswith("qat: layer 'conv1_selu' (Activation 'selu') cannot be quantized")
    assert not (out / "model.keras").exists() and not (out / "logs").exists()


def test_unknown_dense_layer_has_a_did_you_mean(tiny_source, tmp_path):
    with pytest.raises(OptionError, match=r"prune.dense: .* has no layer 'head_fx' \(did you mean: head_fc"):
        _compress(f"from={tiny_source}", "method=prune", "prune.dense=head_fx", f"out={tmp_path / 'o'}")


def test_training_options_layer_over_the_source_config(digits_run):
    cfg = load_config(CompressConfig, [f"from={digits_run}", "method=qat", "batch_size=32"])
    tune = cfg.training()
    assert tune.data.source == "digits" and tune.batch_size == 32
    assert tune.epochs == 4 and tune.lr == pytest.approx(0.1 * 0.02)   # fine-tune defaults
    assert cfg.run_dir() == digits_run.parent / f"{digits_run.name}-qat"


def test_a_source_trained_with_ema_is_fine_tuned_without_it(tiny_source, tmp_path):
    import shutil

    import yaml

    source = tmp_path / "ema-source"
    shutil.copytree(tiny_source, source)
    config = yaml.safe_load((source / "config.yaml").read_text())
    (source / "config.yaml").write_text(yaml.safe_dump({**config, "ema": 0.99}))
    cfg = load_config(CompressConfig, [f"from={source}", "method=qat"])
    cfg.validate()
    assert cfg.training().ema == 0.0   # tfmot's tf_keras twin has no SwapEMAWeights


# ---- the three methods ---------------------------------------------------------------------

def test_prune_reaches_the_target_and_model_keras_is_plain_keras3(pruned, digits_run):
    from models import load_model, read_contract

    m = pruned.metrics["compress"]
    assert m["method"] == "prune" and m["prune"]["sparsity"] == 0.75
    pruned_layers = set(m["prune"]["layers"])
    assert "stem_conv" not in pruned_layers and "head_fc" not in pruned_layers   # kept dense
    model = load_model(pruned.model)                   # Keras 3, safe mode
    assert type(model).__module__.startswith("keras")
    assert read_contract(pruned.model) == read_contract(digits_run / "model.keras")
    layers = model_sparsity(model)["layers"]
    for name in pruned_layers:
        assert layers[name] == pytest.approx(0.75, abs=0.01), name
    assert layers["stem_conv"] < 0.05 and layers["head_fc"] < 0.05
    assert m["sparsity"]["layers"] == pytest.approx(layers)
    for key in ("accuracy_before", "accuracy_after"):
        assert 0 <= m[key]["test"] <= 1
    assert m["accuracy_after"]["test"] == pytest.approx(pruned.metrics["test_accuracy"])
    cfg = (pruned.run_dir / "config.yaml").read_text()
    assert "compress:" in cfg and "method: prune" in cfg and "source: digits" in cfg
    assert (pruned.run_dir / "curves.png").is_file() and (pruned.run_dir / "logs" / "train.csv").is_file()


def test_qat_writes_the_qat_graph_and_float_weights(qat, digits_run):
    from models import load_model, read_contract

    m = qat.metrics["compress"]
    assert m["method"] == "qat" and m["qat"]["weights"] == "per_channel"   # resnet: no depthwise
    assert (qat.run_dir / "qat" / "saved_model" / "saved_model.pb").is_file()
    assert read_contract(qat.model) == read_contract(digits_run / "model.keras")
    load_model(qat.model)
    at_least("QAT digits test accuracy", m["accuracy_after"]["test"], 0.5)


def test_prune_qat_keeps_the_zeros(pqat, pruned):
    from models import load_model

    m = pqat.metrics["compress"]
    assert m["method"] == "prune_qat" and m["qat"]["preserve_sparsity"]
    assert m["source_model"] == pruned.metrics["compress"]["source_model"]   # the uncompressed run
    assert not (pqat.run_dir / "stages").exists()
    layers = model_sparsity(load_model(pqat.model))["layers"]
    for name in pruned.metrics["compress"]["prune"]["layers"]:
        assert layers[name] == pytest.approx(0.75, abs=0.01), name


def test_prune_qat_from_an_unpruned_run_prunes_first(tiny_source, tmp_path):
    from models import load_model

    result = _compress(f"from={tiny_source}", "method=prune_qat", "epochs=2", "prune.end_epoch=1",
                       f"out={tmp_path / 'pqat'}")
    stage1 = json.loads((result.run_dir / "stages" / "prune" / "metrics.json").read_text())["compress"]
    assert stage1["method"] == "prune" and result.metrics["compress"]["method"] == "prune_qat"
    layers = model_sparsity(load_model(result.model))["layers"]
    for name in stage1["prune"]["layers"]:
        assert layers[name] == pytest.approx(0.75, abs=0.02), name


# ---- export of compressed runs --------------------------------------------------------------

def _export(run, *args):
    from pipeline.export import ExportConfig, export

    return export(load_config(ExportConfig, [f"model={run}", "verbose=false", *args]))


def test_pruned_run_exports_every_float_format_and_the_zeros_survive(pruned):
    from models import load_model
    from pipeline.compress.sparsity import file_sparsity
    from serving.metadata import read_onnx_metadata, read_tflite_metadata

    result = _export(pruned.run_dir, *TEST_GATE)   # its int8 files: drops up to 0.0112 of 0.02 measured
    want = model_sparsity(load_model(pruned.model))["overall"]
    assert want > 0.7
    assert [a["format"] for a in result.artifacts] == ["tflite_fp32", "tflite_fp16", "tflite_dynamic",
                                                      "tflite_int8", "onnx", "onnx_int8"]
    for art in result.artifacts:
        path = result.out_dir / art["file"]
        got = file_sparsity(path)["overall"]      # zeros counted in the file's own weight tensors
        assert got >= want - 0.005 and art["sparsity"] == got, art["file"]
        assert art["size_gzip_bytes"] < 0.6 * art["size_bytes"], art["file"]   # zeros compress
        p = art["parity"]
        gate_passed(art)
        assert p["accuracy_source"] == pytest.approx(
            pruned.metrics["compress"]["accuracy_before"]["test"])
        assert p["accuracy_change_vs_source"] == pytest.approx(p["accuracy"] - p["accuracy_source"])
        meta = (read_onnx_metadata if path.suffix == ".onnx" else read_tflite_metadata)(path.read_bytes())
        assert meta["quantization"]["compression"]["method"] == "prune"
        assert meta["quantization"]["compression"]["prune"]["target"] == 0.75


def test_sparse_encoding_is_asked_for_by_name_and_stores_no_zeros(pruned, tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    from models import load_model
    from pipeline.compress.sparsity import file_sparsity

    result = _export(pruned.run_dir, "formats=tflite_sparse", f"out={tmp_path / 'export'}")
    (sparse,) = result.artifacts
    assert sparse["file"] == "model_sparse.tflite"
    gate_passed(sparse)
    at_least("sparse vs Keras agreement", sparse["parity"]["top1_agreement"], 0.995)
    at_most("sparse vs Keras max |dp|", sparse["parity"]["max_abs_diff"], 1e-4)
    path = tmp_path / "export" / sparse["file"]
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    encoded = [t for t in model.subgraphs[0].tensors if t.sparsity is not None]
    assert len(encoded) >= 10                                 # the pruned convs
    stored = sum(len(model.buffers[t.buffer].data) // 4 for t in encoded)
    dense_size = sum(int(np.prod(t.shape)) for t in encoded)
    assert stored < 0.3 * dense_size                          # their 75% zeros are not in the file
    keras_model = load_model(pruned.model)
    assert sparse["size_bytes"] < 4 * keras_model.count_params()   # below the float32 weights alone
    # zeros are counted in the dense shape: the manifest's sparsity is the model's
    want = model_sparsity(keras_model)["overall"]
    got = file_sparsity(path)["overall"]
    assert abs(got - want) < 0.02 and sparse["sparsity"] == got


def test_qat_int8_file_is_int8_and_matches_the_qat_graph(qat, digits_run):
    import tensorflow as tf

    import serving
    from pipeline.data import DataConfig, load_dataset
    from pipeline.export.tflite import tensor_types

    result = _export(qat.run_dir, "io=uint8")
    assert {a["format"]: a["file"] for a in result.artifacts} == {
        "onnx_int8": "model_int8.onnx", "tflite_qat_int8": "model_qat_int8_uint8io.tflite"}
    art = next(a for a in result.artifacts if a["format"] == "tflite_qat_int8")
    path = result.out_dir / art["file"]
    counts = tensor_types(path.read_bytes())
    assert counts.get("int8", 0) > 20 and counts.get("float32", 0) == 0   # uint8 I/O, int8 inside
    assert art["parity"]["reference"] == "qat graph"
    gate_passed(art)
    # the file against the QAT graph, independently of the gate's own numbers
    images = load_dataset(DataConfig("digits"), image_size=(32, 32), channels=1).test.images
    fn = tf.saved_model.load(str(qat.run_dir / "qat" / "saved_model")).signatures["serving_default"]
    want = fn(tf.constant(images.astype("float32")))["probs"].numpy()
    got = serving.load(path).predict(images)
    at_least("QAT int8 file vs QAT graph agreement", np.mean(got.argmax(1) == want.argmax(1)), 0.97)
    assert art["parity"]["top1_agreement"] == pytest.approx(np.mean(got.argmax(1) == want.argmax(1)))


@pytest.fixture(scope="module")
def mnv2_run(tmp_path_factory):
    """mobilenetv2 w0.25 (depthwise convs, conv-BN-ReLU6) at 32x32x1 on digits, 3 epochs: ~50%
    test accuracy, so its predictions differ from image to image."""
    return digits_source(tmp_path_factory.mktemp("mnv2"), "mobilenetv2")


@pytest.mark.slow   # 4-5 minutes on 2 cores (3 + 1 epochs of mobilenetv2); the quick resnet18 QAT
                    # test above covers the QAT -> int8 path without depthwise kernels
def test_qat_int8_file_of_a_depthwise_model_follows_its_qat_graph(mnv2_run, tmp_path):
    """Depthwise kernels fake-quantized per channel, as TFLite quantizes them, and the input
    Rescaling quantized in the graph: the file is converted from the QAT ranges alone, all int8.
    Measured on this tiny, unsure model (1 QAT epoch, activation ranges from RangeWarmup): top-1
    agreement 0.90; per-tensor depthwise kernels: file accuracy 0.09 (the converter re-quantized
    float kernels); per channel but calibrated again by a representative dataset: 0.68; ranges
    left at tfmot's +-6 start: 0.81. Not yet the 0.97 gate (rounding apart over 17 blocks)."""
    result = _compress(f"from={mnv2_run}", "method=qat", "epochs=1", f"out={tmp_path / 'qat'}")
    info = json.loads((result.run_dir / "qat" / "info.json").read_text())
    assert info["weights"] == "per_channel" and info["needs_calibration"] is False
    art = _export(result.run_dir, "formats=tflite_qat_int8", "gate.tflite_qat_int8=0.8",
                  "gate.max_accuracy_drop=0.05").artifacts[0]
    assert art["parity"]["reference"] == "qat graph" and art["parity"]["top1_agreement"] >= 0.8


def test_prune_qat_int8_file_keeps_the_zeros(pqat):
    from models import load_model
    from pipeline.compress.sparsity import tflite_sparsity

    result = _export(pqat.run_dir, "formats=tflite_qat_int8")
    want = model_sparsity(load_model(pqat.model))["overall"]
    assert want > 0.7
    assert tflite_sparsity((result.out_dir / "model_qat_int8.tflite").read_bytes())["overall"] >= want - 0.005


def test_qat_format_needs_a_qat_run(digits_run):
    with pytest.raises(OptionError, match="tflite_qat_int8 needs a QAT run"):
        _export(digits_run, "formats=tflite_qat_int8")


def test_report_lists_the_variants_made_from_a_run(digits_run, digits_export, pruned, qat, tmp_path):
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for name in ("model.keras", "config.yaml"):
        shutil.copy(digits_run / name, src / name)
    shutil.copytree(digits_export.out_dir, src / "export")
    for run, name in ((pruned, "src-prune"), (qat, "src-qat")):
        if not (run.run_dir / "export" / "manifest.json").is_file():
            _export(run.run_dir)
        shutil.copytree(run.run_dir, tmp_path / name)
    assert main(["report", str(src), "runs=2", "warmup=1", "keras=false", "verbose=false"]) == 0
    data = json.loads((src / "report.json").read_text())
    by_variant = {}
    for row in data["rows"]:
        by_variant.setdefault(row["variant"], []).append(row["format"])
        assert row["isa"] and row["p50_ms"] > 0 and row["gzip_kb"] > 0
    assert set(by_variant) == {"source", "pruned 75%", "QAT"}
    assert "tflite_int8" in by_variant["source"] and "tflite_qat_int8" in by_variant["QAT"]
    assert "src-prune/export/model_fp32.tflite" in data["pareto_front"] + [r["file"] for r in data["rows"]]
    md = (src / "report.md").read_text()
    assert "| pruned 75% | src-prune/export/model_int8.tflite | tflite_int8 |" in md
    assert (src / "pareto.png").is_file()


def test_tfmot_is_not_imported_by_the_parent():
    code = ("import sys, pipeline.compress, pipeline.__main__, models, serving; "
            "print('tensorflow_model_optimization' in sys.modules, 'tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True)
    assert r.stdout.split() == ["False", "False"], r.stderr[-2000:]


# ---- resume --------------------------------------------------------------------------------

def _epoch_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sigkill_mid_compression_then_same_command_resumes(tiny_source, tmp_path):
    out = tmp_path / "run"
    # after the first, an epoch of the tiny model takes ~0.03 s: enough of them that the worker
    # cannot finish the run in the 0.5 s it may take to notice its parent is gone (6 raced: all
    # done before the kill took effect, on a quiet fresh clone)
    epochs = 60
    cmd = [sys.executable, "-m", "pipeline", "compress", f"from={tiny_source}", "method=prune",
           f"epochs={epochs}", "prune.end_epoch=2", "verbose=2", f"out={out}"]
    log = out / "logs" / "train.csv"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 240
        while not (log.is_file() and len(_epoch_rows(log)) >= 2):
            assert proc.poll() is None, f"ended before it was killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no two epochs within 240 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)   # the CLI; its worker must follow it
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(1.5)   # the worker notices its parent is gone within 0.5 s
    first = _epoch_rows(log)
    assert not (out / "metrics.json").exists() and len(first) < epochs
    r = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _epoch_rows(log)
    assert [int(row["epoch"]) for row in rows] == list(range(epochs))
    assert int(rows[-1]["session"]) == 2 and int(rows[0]["session"]) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] >= 1
    from models import load_model

    layers = model_sparsity(load_model(out / "model.keras"))["layers"]
    for name in metrics["compress"]["prune"]["layers"]:
        assert layers[name] == pytest.approx(0.75, abs=0.02), name
    assert np.isfinite(metrics["compress"]["accuracy_after"]["test"])
