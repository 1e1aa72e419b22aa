"""Self-verifying files: a .tflite/.onnx file carries the sha256 of its own content in its
metadata (serving.metadata.seal), a .keras zip its members' CRC-32s, so a file copied to a device
without manifest.json still refuses to load once a byte of it has changed. Real exported files
(tests/serving_models.py), real LiteRT and ONNX Runtime."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from serving_models import artifacts, flip_byte

import serving
from serving.__main__ import main
from serving.metadata import (
    DIGEST_KEY,
    METADATA_KEY,
    ArtifactError,
    read_metadata,
    read_onnx_metadata,
    seal,
    verify_seal,
)

FILES = ("model_fp32.tflite", "model_int8.tflite", "model.onnx", "model.keras")


@pytest.fixture(scope="module")
def art():
    return artifacts()


@pytest.fixture
def alone(art, tmp_path):
    """Each exported file copied into a folder of its own: no manifest.json beside it."""
    for name in FILES:
        shutil.copy(art.export / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("where", [0.25, 0.5, 0.75])
def test_a_flipped_weight_byte_is_refused_without_the_manifest(art, alone, name, where):
    path = alone / name
    serving.load(path).predict(art.pixels[:1])          # intact: loads and answers
    size = path.stat().st_size
    flip_byte(path, int(size * where))                  # deep inside the weights
    with pytest.raises(ArtifactError, match=re.escape(name) + ": the file was changed or damaged"):
        serving.load(path)
    assert not (alone / "manifest.json").exists()


@pytest.mark.parametrize("name", FILES)
def test_a_flipped_byte_is_refused_with_the_manifest_too(art, tmp_path, name):
    export = tmp_path / "export"
    shutil.copytree(art.export, export)
    flip_byte(export / name)
    with pytest.raises(ArtifactError, match="changed or damaged"):
        serving.load(export / name)                                  # manifest check first
    with pytest.raises(ArtifactError, match="changed or damaged"):
        serving.load(export / name, manifest=None)                   # the file's own digest


def test_cli_refuses_a_damaged_file_in_one_line(art, alone, capsys):
    path = alone / "model_fp32.tflite"
    flip_byte(path)
    assert main(["predict", f"model={path}", f"source={art.images[0]}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "changed or damaged" in err and "\n" not in err


@pytest.mark.parametrize("name", ["model_fp32.tflite", "model.onnx"])
def test_every_byte_but_the_digest_is_covered(art, name):
    """Flip 64 bytes spread over the whole file, one at a time: every copy is refused (the
    digest no longer matches, or the file no longer parses), never silently served."""
    data = (art.export / name).read_bytes()
    meta = read_metadata(art.export / name)
    digest_at = data.index(meta[DIGEST_KEY].encode())
    positions = [p for p in np.linspace(0, len(data) - 1, 64).astype(int)
                 if not digest_at <= p < digest_at + 64]
    for p in positions:
        bad = bytearray(data)
        bad[p] ^= 0x01
        with pytest.raises(ArtifactError):
            verify_seal(bytes(bad), meta, name)
    verify_seal(data, meta, name)   # and the intact file passes


def test_digest_is_the_sha256_of_the_file_with_the_digest_zeroed(art):
    import hashlib

    data = (art.export / "model_fp32.tflite").read_bytes()
    digest = read_metadata(art.export / "model_fp32.tflite")[DIGEST_KEY]
    zeroed = data.replace(digest.encode(), b"0" * 64)
    assert hashlib.sha256(zeroed).hexdigest() == digest
    assert seal(zeroed) == data                              # sealing is deterministic
    with pytest.raises(ArtifactError, match="expected one unsealed"):
        seal(data)                                           # already sealed


def test_onnx_metadata_reader_needs_no_onnx_package_and_agrees_with_it(art):
    import onnx

    path = art.export / "model.onnx"
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props[METADATA_KEY]) == read_onnx_metadata(path)


def test_unsealed_metadata_is_refused(art, tmp_path):
    """A file whose metadata has no digest (hand-embedded, or from an older exporter)."""
    import onnx

    proto = onnx.load(str(art.export / "model.onnx"))
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            meta = json.loads(p.value)
            del meta[DIGEST_KEY]
            p.value = json.dumps(meta)
    path = tmp_path / "unsealed.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ArtifactError, match=rf"unsealed\.onnx: artifact metadata has no {DIGEST_KEY}"):
        serving.load(path)
