"""Crafted model files (issue 20, causes 5-7): sizes bounded before anything is read whole, ONNX
external data refused (the seal covers one file only), and a file LiteRT or the metadata parser
chokes on gets one line naming it - in serving and in the demo's upload."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from serving_models import with_metadata

import serving
from serving.metadata import METADATA_KEY, ArtifactError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny untrained LeNet (16x16x1, 3 classes) as sealed .tflite and .onnx files."""
    import keras
    import tensorflow as tf

    from models import create_model, get_contract

    keras.utils.set_random_seed(0)
    model = create_model("lenet", num_classes=3, input_shape=(16, 16, 1), labels=["a", "b", "c"])
    root = tmp_path_factory.mktemp("hostile_models")
    raw = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (root / "m.tflite").write_bytes(with_metadata(raw, ".tflite", "tflite_fp32", get_contract(model)))
    model.export(str(root / "raw.onnx"), format="onnx", verbose=False)
    raw_onnx = (root / "raw.onnx").read_bytes()
    (root / "m.onnx").write_bytes(with_metadata(raw_onnx, ".onnx", "onnx", get_contract(model)))
    return root


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text and len(text) < 600, text
    return text


# ------------------------------------------------------------------ cause 5


def test_a_zip_bomb_contract_is_refused_before_it_is_inflated(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("contract.json", b" " * (64 << 20))      # 64 MB of blanks: ~64 KB compressed
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ArtifactError, match=r"bomb.keras: contract.json .* is over the limit") as e:
        serving.load(path)
    _one_line(e)


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_a_huge_sparse_model_file_is_refused_before_it_is_read(tmp_path, suffix):
    path = tmp_path / f"huge{suffix}"
    with open(path, "wb") as f:
        f.write(b"\x1c\x00\x00\x00TFL3" if suffix == ".tflite" else b"\x08\x07")
        f.truncate((2 << 30) + (256 << 20))                    # 2.25 GiB, sparse: no disk used
    with pytest.raises(ArtifactError, match=rf"huge{suffix}: .* over the limit") as e:
        serving.load(path)
    _one_line(e)


# ------------------------------------------------------------------ cause 6


def test_onnx_external_data_is_refused(files, tmp_path):
    import onnx

    from serving.metadata import embed_onnx_metadata, read_onnx_metadata

    meta = read_onnx_metadata(files / "m.onnx")
    proto = onnx.load(files / "m.onnx")
    path = tmp_path / "ext.onnx"
    onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="w.bin", size_threshold=1024)   # the weights, not the shapes
    assert (tmp_path / "w.bin").stat().st_size > 0
    proto = onnx.load(path, load_external_data=False)
    path.write_bytes(embed_onnx_metadata(proto, meta))        # sealed: only ext.onnx's bytes
    with pytest.raises(ArtifactError, match=r"ext.onnx: .*external data") as e:
        serving.load(path)
    _one_line(e)


# ------------------------------------------------------------------ cause 7


def _custom_op_tflite(files, path):
    from ai_edge_litert import schema_py_generated as fb

    from serving.metadata import embed_tflite_metadata, read_tflite_metadata

    data = (files / "m.tflite").read_bytes()
    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    code = model.operatorCodes[0]
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.CUSTOM
    code.customCode = b"HostileOp"
    import flatbuffers

    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(embed_tflite_metadata(bytes(b.Output()), read_tflite_metadata(files / "m.tflite")))
    return path


def test_a_tflite_with_an_unresolved_custom_op_gets_one_line(files, tmp_path):
    from serving.demo.inference import open_upload
    from serving.demo.settings import DemoError

    path = _custom_op_tflite(files, tmp_path / "custom.tflite")
    with pytest.raises(ArtifactError, match=r"custom.tflite: LiteRT cannot load this model .*HostileOp") as e:
        serving.load(path)
    _one_line(e)
    with pytest.raises(DemoError, match=r"^mine.tflite: .*HostileOp") as e:   # the upload's own name
        open_upload("mine.tflite", path.read_bytes(), base=tmp_path / "uploads")
    _one_line(e)


def test_deeply_nested_onnx_metadata_gets_one_line(files, tmp_path):
    import onnx

    from serving.demo.inference import open_upload
    from serving.demo.settings import DemoError

    proto = onnx.load(files / "m.onnx")
    for i in reversed(range(len(proto.metadata_props))):
        del proto.metadata_props[i]
    proto.metadata_props.add(key=METADATA_KEY, value="[" * 200_000 + "]" * 200_000)
    path = tmp_path / "deep.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ArtifactError, match=r"deep.onnx: artifact metadata .* is not valid JSON") as e:
        serving.load(path)
    _one_line(e)
    with pytest.raises(DemoError, match=r"^theirs.onnx: artifact metadata") as e:
        open_upload("theirs.onnx", path.read_bytes(), base=tmp_path / "uploads")
    _one_line(e)


def test_the_intact_files_still_load(files):
    for name in ("m.tflite", "m.onnx"):
        probs = serving.load(files / name).predict(np.zeros((2, 16, 16, 1), np.uint8))
        assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert json.loads(json.dumps(serving.load(files / "m.onnx").metadata))["format"] == "onnx"
