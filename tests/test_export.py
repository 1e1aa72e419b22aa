"""pipeline export: every format round-trips through serving within the gate, files describe
themselves, bad requests fail before any work, failures (converter crash, failed gate) leave
nothing behind. Real TensorFlow, LiteRT, tf2onnx and ONNX Runtime throughout."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from margins import at_least, gate_passed

import serving
from models.options import OptionError
from pipeline.__main__ import main
from pipeline.config import load_config
from pipeline.export import FORMATS, ExportConfig, GateConfig, GateError, core, export
from pipeline.export.formats import check_request
from serving.metadata import ArtifactError, read_onnx_metadata, read_tflite_metadata

EXPECTED_FILES = {"tflite_fp32": "model_fp32.tflite", "tflite_fp16": "model_fp16.tflite",
                  "tflite_dynamic": "model_dynamic.tflite", "tflite_int8": "model_int8_uint8io.tflite",
                  "onnx": "model.onnx", "onnx_int8": "model_int8.onnx"}


@pytest.fixture(scope="module")
def exported(digits_export):
    return digits_export


@pytest.fixture(scope="module")
def held_out(digits_run):
    from models import load_model
    from pipeline.data import DataConfig, load_dataset

    ds = load_dataset(DataConfig(source="digits"), image_size=(32, 32), channels=1)
    model = load_model(digits_run / "model.keras")
    return ds.test.images, ds.test.labels, model.predict(ds.test.images.astype("float32"), verbose=0)


def _copy_run(digits_run, dest):
    dest.mkdir()
    for name in ("model.keras", "config.yaml"):
        shutil.copy(digits_run / name, dest / name)
    return dest


def test_every_format_round_trips_through_serving_within_the_gate(exported, digits_run, held_out):
    assert exported.out_dir == digits_run / "export"
    assert {a["format"]: a["file"] for a in exported.artifacts} == EXPECTED_FILES
    images, labels, keras_probs = held_out
    for art in exported.artifacts:   # each file against the bars its gate ran with (TEST_GATE)
        runner = serving.load(exported.out_dir / art["file"])        # manifest checked ("auto")
        assert runner.manifest is not None
        probs = runner.predict(images)
        agreement = np.mean(probs.argmax(1) == keras_probs.argmax(1))
        at_least(f"{art['format']} vs Keras agreement", agreement, art["parity"]["min_top1_agreement"])
        # the manifest's numbers are what the gate measured on the same test split
        gate_passed(art)
        assert art["parity"]["samples"] == len(labels)
        assert art["parity"]["top1_agreement"] == pytest.approx(agreement, abs=1e-9)
        if FORMATS[art["format"]].weights == "float32":   # fp32 and onnx: same arithmetic
            assert np.abs(probs - keras_probs).max() < 1e-3
        if art["parity"]["max_accuracy_drop"] is not None:   # lossy files
            assert art["parity"]["accuracy_drop"] <= art["parity"]["max_accuracy_drop"]


def test_metadata_is_read_back_from_each_file(exported, digits_run):
    from models import read_contract

    contract = read_contract(digits_run / "model.keras")
    for art in exported.artifacts:
        path = exported.out_dir / art["file"]
        meta = (read_onnx_metadata if path.suffix == ".onnx" else read_tflite_metadata)(path.read_bytes())
        spec = FORMATS[art["format"]]
        assert meta["format"] == spec.name
        assert meta["contract"] == contract.to_dict()
        assert meta["quantization"]["weights"] == spec.weights
        assert meta["quantization"]["activations"] == spec.activations
        assert meta["source"]["model"] == "model.keras"
        assert meta["source"]["sha256"] == serving.manifest.sha256_file(digits_run / "model.keras")
        assert meta["source"]["config"]["data"] == {"source": "digits"}
        assert art["sha256"] == serving.manifest.sha256_file(path)
        if spec.name == "tflite_int8":
            assert meta["input"]["dtype"] == meta["output"]["dtype"] == "uint8"
            assert meta["input"]["scale"] > 0 and meta["output"]["scale"] > 0
            assert meta["quantization"]["calibration"]["samples"] == 300
        else:
            assert meta["input"]["dtype"] == "float32" and meta["input"]["scale"] is None
            calibration = meta["quantization"]["calibration"]
            assert (calibration["samples"] == 300) if spec.calibrated else calibration is None
        assert meta["input"]["shape"][1:] == [32, 32, 1]


def test_source_hash_and_saved_config(exported, digits_run):
    manifest = serving.read_manifest(exported.out_dir)
    assert manifest["source"]["sha256"] == serving.manifest.sha256_file(digits_run / "model.keras")
    saved = yaml.safe_load((exported.out_dir / "export_config.yaml").read_text())
    # the resolved config keeps the command's overrides (conftest.TEST_GATE) and the defaults
    assert saved["io"] == "uint8" and saved["gate"]["tflite_int8"] == 0.95
    assert saved["gate"]["tflite_fp32"] == 0.995
    assert saved["gate"]["max_accuracy_drop"] == 0.05
    assert load_config(ExportConfig, {}, exported.out_dir / "export_config.yaml").io == "uint8"


@pytest.mark.parametrize("name", ["model_fp32.tflite", "model.onnx"])
def test_tampered_file_is_refused(exported, tmp_path, name):
    copy = tmp_path / "export"
    shutil.copytree(exported.out_dir, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 .* does not match"):
        serving.load(copy / name)


@pytest.mark.parametrize("args,message", [
    (["formats=tflite_int9"], "unknown format 'tflite_int9' (did you mean: tflite_int8"),
    (["formats=onnx", "io=uint8"],
     "io=uint8: not an option of onnx (only tflite_int8, tflite_qat_int8 take it)"),
    (["formats=tflite_fp32", "opset=17"], "opset=17: not an option of tflite_fp32 (only onnx"),
    (["opset=30"], "opset: 30 is outside the supported 13..18"),
    (["io=uint9"], "io: 'uint9' is not one of 'float', 'uint8', 'int8' (did you mean: uint8"),
    (["formats=onnx,onnx"], "onnx listed twice"),
    (["gate.tflite_int8=1.5"], "gate.tflite_int8: top-1 agreement must be in 0..1"),
    (["gate.tflite_in8=0.9"], "unknown key 'gate.tflite_in8' (did you mean: tflite_int8"),
    (["gate.tta=flp"], "gate.tta: 'flp' is not one of none, flip, flip_crop (did you mean: flip"),
    (["calib=/no/such/folder"], "'/no/such/folder': no such folder"),
    (["int8.repair=of"], "int8.repair: 'of' is not one of 'auto', 'none'"),
    (["int8.budget=1.5"], "int8.budget: a fraction of the layers in (0, 1], got 1.5"),
])
def test_bad_option_fails_before_any_work(digits_run, tmp_path, capsys, monkeypatch, args, message):
    run = _copy_run(digits_run, tmp_path / "run")

    def work_started(*_a, **_k):   # sampling images is the first step after validation
        raise AssertionError("export started work before rejecting the request")

    monkeypatch.setattr(core, "load_images", work_started)
    monkeypatch.setattr(core, "run_worker", work_started)
    assert main(["export", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["config.yaml", "model.keras", "run"]


def test_bare_keras_file_needs_calib(digits_run, tmp_path):
    shutil.copy(digits_run / "model.keras", tmp_path / "m.keras")
    with pytest.raises(OptionError, match="no config.yaml with a data: section beside it; give calib="):
        export(ExportConfig(model=str(tmp_path / "m.keras")))
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def test_option_table_is_consistent():
    assert {f.name for f in GateConfig.__dataclass_fields__.values()} >= set(FORMATS)
    assert check_request(["tflite_int8", "onnx"], {"io": "int8", "opset": 13})
    with pytest.raises(OptionError, match="calib_samples=3: not an option of onnx"):
        check_request(["onnx"], {"calib_samples": 3})
    assert FORMATS["tflite_int8"].filename({"io": "float"}) == "model_int8.tflite"
    assert FORMATS["tflite_int8"].filename({"io": "int8"}) == "model_int8_int8io.tflite"
    assert FORMATS["tflite_dynamic"].filename({"io": "uint8"}) == "model_dynamic.tflite"


def _selu_model(path):
    """A model whose int8 conversion crashes TF's converter (SIGSEGV after "error: scale out of
    expressed type range"): SELU on unnormalized 0..255 inputs."""
    import keras

    from models import save_model, set_contract
    from models.contract import DataContract
    from pipeline.data.digits import CLASS_NAMES

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Rescaling(1.0, name="normalize")(inp)
    x = keras.layers.Conv2D(8, 3, name="conv")(x)
    x = keras.layers.Activation("selu", name="selu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    contract = DataContract(input_shape=(32, 32, 1), labels=CLASS_NAMES, mean=(0.0,), std=(1.0,))
    save_model(set_contract(keras.Model(inp, probs), contract), path)


def test_strict_converter_crash_mid_export_leaves_no_file(tmp_path, capsys):
    _selu_model(tmp_path / "model.keras")
    # tflite_fp32 is converted and written first, then the int8 converter dies
    rc = main(["export", f"model={tmp_path / 'model.keras'}", "calib=digits", "verbose=false",
               "formats=tflite_fp32,tflite_int8", "--strict"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "error: tflite_int8: the converter process died (killed by SIGSEGV)" in err
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_failing_file_is_listed_and_the_others_are_published(tmp_path, capsys):
    """No dead end: the int8 converter dies, the other files are published; the command fails
    only because tflite_int8 was asked for by name."""
    _selu_model(tmp_path / "model.keras")
    rc = main(["export", f"model={tmp_path / 'model.keras'}", "calib=digits", "verbose=false",
               "formats=tflite_fp32,tflite_int8", f"out={tmp_path / 'named'}"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "1 requested file(s) failed and were not published (the 1 that passed are in" in err
    assert "tflite_int8 (model_int8.tflite): tflite_int8: the converter process died" in err
    manifest = serving.read_manifest(tmp_path / "named")
    assert [a["file"] for a in manifest["artifacts"]] == ["model_fp32.tflite"]
    (failed,) = manifest["failed"]
    assert failed["file"] == "model_int8.tflite" and failed["stage"] == "conversion"
    assert sorted(p.name for p in (tmp_path / "named").iterdir()) == [
        "export_config.yaml", "manifest.json", "model_fp32.tflite"]

    # the default formats are "whatever applies": a failed one is a note, the command succeeds; the
    # worker is started again after the crash and makes onnx and onnx_int8 too
    rc = main(["export", f"model={tmp_path / 'model.keras'}", "calib=digits", "verbose=false",
               f"out={tmp_path / 'default'}", "gate.max_accuracy_drop=1"])
    assert rc == 0, capsys.readouterr().err
    manifest = serving.read_manifest(tmp_path / "default")
    published = {a["format"] for a in manifest["artifacts"]}
    assert {"tflite_fp32", "onnx"} <= published and "tflite_int8" not in published
    assert published | {f["format"] for f in manifest["failed"]} == set(EXPECTED_FILES)
    assert "tflite_int8" in {f["format"] for f in manifest["failed"]}


def test_failing_gate_exits_non_zero_and_keeps_the_previous_export(exported, digits_run, tmp_path,
                                                                   capsys):
    run = _copy_run(digits_run, tmp_path / "run")
    shutil.copytree(exported.out_dir, run / "export")
    before = sorted((p.name, p.read_bytes()) for p in (run / "export").iterdir())
    # an impossible bound: neither file can match Keras to 1e-12
    rc = main(["export", str(run), "formats=tflite_dynamic,tflite_fp32", "gate.max_abs_diff=1e-12",
               "gate.samples=60", "verbose=false"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "parity gate failed, no artifact written" in err
    assert "tflite_dynamic (model_dynamic.tflite): max |dp|" in err
    assert "tflite_fp32 (model_fp32.tflite): max |dp|" in err
    assert sorted((p.name, p.read_bytes()) for p in (run / "export").iterdir()) == before
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "export", "model.keras"]


def test_gate_judges_each_threshold():
    from pipeline.tasks.classification.parity import compare, judge

    ref = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3]]
    probs = ref.copy()
    probs[0] = [0.1, 0.7, 0.1, 0.1]        # one of 8 flips: agreement 0.875, accuracy 1 -> 0.875
    n = compare(ref, probs, np.array([0, 1, 2, 3, 0, 1, 2, 3]))
    assert n["top1_agreement"] == 0.875 and n["accuracy_drop"] == pytest.approx(0.125)
    assert n["max_abs_diff"] == pytest.approx(0.9)
    gate = GateConfig(tflite_int8=0.8, max_accuracy_drop=0.1)
    assert judge(FORMATS["tflite_int8"], n, gate) == [
        "accuracy drop 12.50 points > 10.00 (Keras 1.0000, file 0.8750)"]
    assert judge(FORMATS["tflite_fp32"], n, gate) == [
        "top-1 agreement 0.8750 < 0.9950 (accuracy: Keras 1.0000, file 0.8750; "
        "gate.tflite_fp32=... sets the threshold)"]
    assert judge(FORMATS["tflite_fp32"], n, GateConfig(tflite_fp32=0.8)) == []
    err = GateError(["tflite_int8 (model_int8.tflite): top-1 agreement 0.9 < 0.97", "onnx (model.onnx): x"])
    assert str(err).splitlines() == ["parity gate failed, no artifact written:",
                                     "  tflite_int8 (model_int8.tflite): top-1 agreement 0.9 < 0.97",
                                     "  onnx (model.onnx): x"]


def test_a_file_that_does_not_hold_what_its_name_promises_is_rejected(exported):
    from pipeline.export.errors import ExportError
    from pipeline.export.tflite import check_weights
    from pipeline.tasks import get_task

    task = get_task("classification")
    fp32 = (exported.out_dir / "model_fp32.tflite").read_bytes()
    check_weights(fp32, FORMATS["tflite_fp32"])
    assert task.check_file("tflite", fp32, FORMATS["tflite_fp32"], {}) == []
    with pytest.raises(ExportError, match="tflite_fp16: the converted file has no float16 tensors"):
        check_weights(fp32, FORMATS["tflite_fp16"])
    assert task.check_file("tflite", fp32, FORMATS["tflite_int8"], {"io": "uint8"}) == [
        "converted input is float32, expected uint8"]
    dynamic = (exported.out_dir / "model_dynamic.tflite").read_bytes()
    (problem,) = task.check_file("tflite", dynamic, FORMATS["tflite_int8"], {"io": "float"})
    assert "float32 tensors left in a full-integer model" in problem


def test_logits_model_is_compared_as_probabilities(tmp_path):
    import keras

    from models import save_model, set_contract
    from models.contract import DataContract
    from pipeline.data.digits import CLASS_NAMES

    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="normalize")(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(10, name="logits")(x)
    contract = DataContract(input_shape=(16, 16, 1), labels=CLASS_NAMES, mean=(0.0,), std=(255.0,),
                            output="logits")
    save_model(set_contract(keras.Model(inp, logits), contract), tmp_path / "m.keras")
    result = export(ExportConfig(model=str(tmp_path / "m.keras"), calib="digits",
                                 formats=("tflite_fp32",), verbose=False, gate=GateConfig(tta="flip")))
    parity = result.artifacts[0]["parity"]
    assert parity["passed"] and parity["max_abs_diff"] < 1e-5 and parity["top1_agreement"] == 1.0
    assert parity["tta"] == "flip" and 0.0 <= parity["accuracy_tta"] <= 1.0   # reported, not gated


@pytest.mark.parametrize("fmt", ["tflite_fp32", "tflite_int8"])
def test_tflite_files_carry_standard_metadata(exported, digits_run, fmt):
    """MediaPipe's ImageClassifier reads TFLITE_METADATA: the image input (grayscale here; mean 0
    / std 1 for a float input, none for uint8 pixels), the probabilities with their labels
    file; our own document and its seal are intact beside it."""
    from models import read_contract
    from tests.tflite_metadata import read_standard

    path = exported.out_dir / EXPECTED_FILES[fmt]
    meta, files = read_standard(path)
    (sub,) = meta["subgraph_metadata"]
    (inp,), (out,) = sub["input_tensor_metadata"], sub["output_tensor_metadata"]
    assert inp["content"]["content_properties"]["color_space"] == "GRAYSCALE"
    units = inp.get("process_units") or []
    if fmt == "tflite_fp32":
        assert units[0]["options"] == {"mean": [0.0], "std": [1.0]}
    else:   # uint8 pixels go in as they are
        assert units == []
    labels = read_contract(digits_run / "model.keras").labels
    assert out["name"] == "probability"
    assert [(f["name"], f["type"]) for f in out["associated_files"]] == [("labels.txt", "TENSOR_AXIS_LABELS")]
    assert files["labels.txt"].decode().splitlines() == list(labels)
    assert meta["version"] == serving.manifest.sha256_file(digits_run / "model.keras")[:12]
    assert read_tflite_metadata(path.read_bytes())["format"] == fmt   # sealed after the writer


def test_grayscale_files_are_not_for_mediapipe(exported):
    """MediaPipe's image tasks take 3 channels: the gate says so instead of failing the file."""
    from pipeline.mediapipe_check import NEEDS_RGB

    cells = {a["format"]: a["parity"].get("mediapipe") for a in exported.artifacts}
    assert NEEDS_RGB.startswith("n/a: MediaPipe needs 3 channels")
    assert cells == {f: (NEEDS_RGB if f.startswith("tflite") else None) for f in cells}
