"""Artifact metadata: the JSON document every exported model file carries about itself.

One document (schema SCHEMA) says what format the file is, its data contract (labels, input
size, normalization), the dtype/shape/quantization of its input and output tensors, how it was
quantized, which `.keras` file it came from (sha256) and what produced it. It lives:
  - TFLite: in the flatbuffer's own `metadata` table, entry METADATA_KEY, whose buffer holds the
    UTF-8 JSON (read with the schema bindings that ship with ai_edge_litert - no TensorFlow);
  - ONNX: in `ModelProto.metadata_props`, key METADATA_KEY;
  - .keras: nothing embedded - the DataContract inside the zip is enough, and read_metadata
    synthesises the same document from it (format "keras", float32 in and out).
This module is the only place that knows the layout; export writes with it, serving reads.

Self-verifying files: the embedded document of a .tflite/.onnx file carries DIGEST_KEY, the
sha256 of the whole file with that digest's own 64 hex characters written as zeros. So every
other byte - graph, weights, the rest of the metadata - is covered, and a file copied to a
device without its manifest.json still refuses to load once one byte of it has changed
(embed_* seal the file; read_tflite_metadata/read_onnx_metadata check it). Both formats store
the JSON verbatim (a flatbuffer uint8 vector, a protobuf string), which is what makes the
in-place seal possible. A .keras file is a zip: its members' CRC-32s are checked instead.
ONNX metadata is read with protobuf's wire format alone (no `onnx` package), so an edge
install (LiteRT + ONNX Runtime, no TensorFlow) can read and verify both formats.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from models.contract import ContractError, DataContract
from models.decoder import metadata_block
from models.io import ModelFileError, read_contract

METADATA_KEY = "cnn_pipeline"
SCHEMA = "cnn-pipeline/artifact/v1"
PRODUCER = "cnn-mobile-pipeline"
PRODUCER_VERSION = "0.1.0"
TFLITE_IDENTIFIER = b"TFL3"
DTYPES = ("float32", "float16", "uint8", "int8", "int32")   # int32: detector classes/count
REQUIRED = ("schema", "format", "contract", "input", "output")
DIGEST_KEY = "content_sha256"
_UNSEALED = "0" * 64
ONNX_METADATA_PROPS = 14   # ModelProto.metadata_props (onnx.proto); entries: key = 1, value = 2
# FlatBuffers and protobuf both address at most 2 GiB; a bigger .tflite/.onnx (or a sparse file
# posing as one) is refused from its size before a byte is read
MAX_MODEL_BYTES = 2 << 30


class ArtifactError(ValueError):
    """A model file (or manifest) that is missing, damaged or does not describe itself;
    str() is '<file>: <problem>'."""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def producer() -> dict[str, Any]:
    """Who wrote the file; versions come from package metadata (no TensorFlow import)."""
    return {"name": PRODUCER, "version": PRODUCER_VERSION,
            "tensorflow": _version("tensorflow"), "keras": _version("keras")}


def tensor_spec(name: str, dtype: str, shape: list[int | None], scale: float | None = None,
                zero_point: int | None = None) -> dict[str, Any]:
    """The "input"/"output" entry; scale/zero_point only for uint8/int8 tensors."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    quantized = dtype in ("uint8", "int8")
    return {"name": name, "dtype": dtype, "shape": [None if d is None or d < 0 else int(d) for d in shape],
            "scale": float(scale) if quantized and scale is not None else None,
            "zero_point": int(zero_point) if quantized and zero_point is not None else None}


def build_metadata(*, format: str, contract: DataContract | Mapping[str, Any],
                   input: Mapping[str, Any], output: Mapping[str, Any],
                   quantization: Mapping[str, Any] | None = None,
                   source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Assemble a schema-v1 document (what the exporter embeds); validated before returning."""
    contract_dict = contract.to_dict() if isinstance(contract, DataContract) else dict(contract)
    meta = {
        "schema": SCHEMA, "format": format, "contract": contract_dict,
        "input": dict(input), "output": dict(output),
        "quantization": dict(quantization or {"weights": "float32", "activations": "float32",
                                              "calibration": None}),
        "source": dict(source or {"model": None, "sha256": None, "config": None}),
        "producer": producer(),
    }
    return validate_metadata(meta, "<new metadata>")


def validate_metadata(meta: Any, where: str) -> dict[str, Any]:
    """Check the document's shape; raise ArtifactError('<where>: ...') on the first problem."""
    if not isinstance(meta, dict):
        raise ArtifactError(f"{where}: artifact metadata is not a JSON object")
    if meta.get("schema") != SCHEMA:
        raise ArtifactError(f"{where}: artifact metadata schema {meta.get('schema')!r} is not "
                            f"supported (this runtime reads {SCHEMA!r})")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ArtifactError(f"{where}: artifact metadata lacks {', '.join(missing)}")
    try:
        DataContract.from_dict(meta["contract"])
    except (ContractError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{where}: artifact metadata has a bad contract: {e}") from None
    for side in ("input", "output"):
        spec = meta[side]
        if not isinstance(spec, dict) or spec.get("dtype") not in DTYPES or not isinstance(
                spec.get("shape"), list):
            raise ArtifactError(f"{where}: artifact metadata {side!r} needs dtype (one of "
                                f"{', '.join(DTYPES)}) and shape, got {spec!r}")
        if spec["dtype"] in ("uint8", "int8") and not spec.get("scale"):
            raise ArtifactError(f"{where}: {side} is {spec['dtype']} but has no quantization scale")
    return meta


def _decode(raw: bytes, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{where}: artifact metadata {METADATA_KEY!r} is not valid JSON ({e})") from None
    except RecursionError:
        raise ArtifactError(f"{where}: artifact metadata {METADATA_KEY!r} is not valid JSON (nested "
                            "too deep)") from None
    return validate_metadata(meta, where)


def _encode(meta: Mapping[str, Any]) -> bytes:
    """The JSON to embed, with an unsealed (all-zero) digest as its last key."""
    meta = {k: v for k, v in meta.items() if k != DIGEST_KEY}
    validate_metadata(dict(meta), "<metadata to embed>")
    return json.dumps({**meta, DIGEST_KEY: _UNSEALED}, sort_keys=False).encode("utf-8")


def _digest_field(hexdigest: str) -> bytes:
    return json.dumps({DIGEST_KEY: hexdigest})[1:-1].encode("utf-8")   # '"content_sha256": "..."'


def seal(data: bytes) -> bytes:
    """Write the sha256 of `data` (which holds exactly one unsealed digest) into that digest."""
    blank = _digest_field(_UNSEALED)
    if data.count(blank) != 1:
        raise ArtifactError(f"<model bytes>: expected one unsealed {DIGEST_KEY}, found {data.count(blank)}")
    return data.replace(blank, _digest_field(hashlib.sha256(data).hexdigest()))


def verify_seal(data: bytes, meta: Mapping[str, Any], where: str) -> None:
    """ArtifactError unless `data` hashes (digest blanked) to the digest its metadata claims."""
    claimed = meta.get(DIGEST_KEY)
    if not isinstance(claimed, str) or len(claimed) != 64:
        raise ArtifactError(f"{where}: artifact metadata has no {DIGEST_KEY} (exported by an older "
                            "version, or not sealed): re-export it")
    field = _digest_field(claimed)
    if data.count(field) != 1:
        raise ArtifactError(f"{where}: the file is damaged (its {DIGEST_KEY} is not where the "
                            "metadata says)")
    actual = hashlib.sha256(data.replace(field, _digest_field(_UNSEALED))).hexdigest()
    if actual != claimed:
        raise ArtifactError(f"{where}: the file was changed or damaged: its content hashes to "
                            f"{actual[:12]}..., its metadata says {claimed[:12]}...")


def check_size(path: str | os.PathLike) -> int:
    """The size of a model file; ArtifactError when missing or over MAX_MODEL_BYTES."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ArtifactError(f"{path}: {size / 2**30:.2f} GiB is over the limit of "
                            f"{MAX_MODEL_BYTES / 2**30:.0f} GiB for a model file")
    return size


def _load_bytes(path_or_bytes: str | os.PathLike | bytes, magic: bytes | None = None
                ) -> tuple[bytes, str]:
    """The file's bytes, read only once its size (and its 4-byte identifier at offset 4, when
    `magic` is given) passed."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), "<tflite bytes>"
    path = Path(path_or_bytes)
    check_size(path)
    with open(path, "rb") as f:
        if magic is not None and f.read(8)[4:8] != magic:
            raise ArtifactError(f"{path}: not a TFLite flatbuffer (no {magic.decode()} identifier)")
        f.seek(0)
        return f.read(), str(path)


# --- TFLite ------------------------------------------------------------------------------

def _tflite_root(buf: bytes, where: str) -> Any:
    from ai_edge_litert import schema_py_generated as fb

    if len(buf) < 8 or buf[4:8] != TFLITE_IDENTIFIER:
        raise ArtifactError(f"{where}: not a TFLite flatbuffer (no {TFLITE_IDENTIFIER.decode()} identifier)")
    return fb.Model.GetRootAs(buf, 0)


def read_tflite_metadata(path_or_bytes: str | os.PathLike | bytes) -> dict[str, Any] | None:
    """The embedded document, or None when the file has no METADATA_KEY entry."""
    buf, where = _load_bytes(path_or_bytes, TFLITE_IDENTIFIER)
    try:
        model = _tflite_root(buf, where)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if (entry.Name() or b"").decode("utf-8", "replace") != METADATA_KEY:
                continue
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # data stored after the flatbuffer (large-model layout)
                raw = buf[buffer.Offset(): buffer.Offset() + buffer.Size()]
            else:
                raw = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
            meta = _decode(raw, where)
            verify_seal(buf, meta, where)
            return meta
    except ArtifactError:
        raise
    except Exception as e:  # a flatbuffer with bad offsets raises struct/index errors
        raise ArtifactError(f"{where}: damaged TFLite flatbuffer ({type(e).__name__}: {e})") from None
    return None


def embed_tflite_metadata(tflite_bytes: bytes, meta: Mapping[str, Any],
                          then: Callable[[bytes], bytes] | None = None) -> bytes:
    """Return the flatbuffer with `meta` stored under METADATA_KEY (an old entry's buffer is
    reused), sealed with its content digest. `then`: what else goes into the file before the
    seal (the export's standard TFLite metadata, pipeline.export.standard_metadata), given the
    file with our entry unsealed; it must keep that entry.

    Every other table (graph, weights, signatures, other metadata) is repacked unchanged."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    payload = _encode(meta)
    _tflite_root(tflite_bytes, "<tflite bytes>")
    model = fb.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    if any(b is not None and b.offset > 1 for b in model.buffers or []):
        raise ArtifactError("<tflite bytes>: buffers stored outside the flatbuffer (models over "
                            "2 GB) are not supported for metadata embedding")
    ours = [m for m in (model.metadata or []) if (m.name or b"") in (METADATA_KEY, METADATA_KEY.encode())]
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)  # ndarray: packed in one copy
    model.buffers = list(model.buffers or [])
    if ours:   # re-embedding: overwrite the old entry's buffer, leave no orphan behind
        model.buffers[ours[0].buffer] = buffer
        model.metadata = [m for m in model.metadata if m is ours[0] or m not in ours]
    else:
        model.buffers.append(buffer)
        entry = fb.MetadataT()
        entry.name = METADATA_KEY
        entry.buffer = len(model.buffers) - 1
        model.metadata = list(model.metadata or []) + [entry]
    builder = flatbuffers.Builder(len(tflite_bytes) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    out = bytes(builder.Output())
    return seal(then(out) if then is not None else out)


# --- ONNX --------------------------------------------------------------------------------

def embed_onnx_metadata(onnx_model_proto: Any, meta: Mapping[str, Any]) -> bytes:
    """Store `meta` in the ModelProto's metadata_props under METADATA_KEY (in place; an old
    entry is replaced) and return the serialized model, sealed with its content digest."""
    payload = _encode(meta).decode("utf-8")
    props = onnx_model_proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]
    props.add(key=METADATA_KEY, value=payload)
    return seal(onnx_model_proto.SerializeToString())


def proto_fields(data: bytes) -> Any:
    """The fields of a protobuf message as an UnknownFieldSet (field_number, wire_type, data),
    without its schema."""
    from google.protobuf import empty_pb2
    from google.protobuf.unknown_fields import UnknownFieldSet

    msg = empty_pb2.Empty()   # no fields declared: every field lands in the unknown set
    msg.ParseFromString(data)
    return UnknownFieldSet(msg)


def _onnx_metadata_props(buf: bytes, where: str) -> dict[str, str]:
    """ModelProto.metadata_props read from the protobuf wire format (no `onnx` package)."""
    from google.protobuf.message import DecodeError

    fields = proto_fields
    props = {}
    try:
        for f in fields(buf):
            if f.field_number == ONNX_METADATA_PROPS and f.wire_type == 2:
                kv = {g.field_number: g.data for g in fields(f.data) if g.wire_type == 2}
                props[kv.get(1, b"").decode("utf-8")] = kv.get(2, b"").decode("utf-8")
    except (DecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{where}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not props and not buf.startswith(b"\x08"):   # field 1 (ir_version, varint) comes first
        raise ArtifactError(f"{where}: not a readable ONNX model (no ir_version field)")
    return props


def read_onnx_metadata(path: str | os.PathLike | bytes) -> dict[str, Any] | None:
    """The embedded document (content digest checked), or None when metadata_props has no
    METADATA_KEY."""
    buf, where = _load_bytes(path)
    value = _onnx_metadata_props(buf, where).get(METADATA_KEY)
    if value is None:
        return None
    meta = _decode(value.encode("utf-8"), where)
    verify_seal(buf, meta, where)
    return meta


# --- any file ----------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_zip(path: Path) -> None:
    """Every member of a .keras zip read in full against its CRC-32 (zipfile.testzip)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ArtifactError(f"{path}: the file was changed or damaged ({e})") from None
    except Exception as e:   # zlib.error and friends from a damaged compressed member
        raise ArtifactError(f"{path}: the file was changed or damaged ({type(e).__name__}: {e})") from None
    if bad is not None:
        raise ArtifactError(f"{path}: the file was changed or damaged (bad CRC-32 in {bad})")


def keras_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The document a .keras file would carry, synthesised from its DataContract."""

    path = Path(path)
    try:
        contract = read_contract(path)
    except ModelFileError as e:
        raise ArtifactError(str(e)) from None
    _check_zip(path)
    h, w, c = contract.input_shape
    detector = contract.task == "detection"
    width = contract.detection.raw_channels(contract.num_classes) if detector else 0
    out_shape = [None, contract.detection.num_anchors, width] if detector else [None, contract.num_classes]
    meta = build_metadata(
        format="keras", contract=contract,
        input=tensor_spec("image", "float32", [None, h, w, c]),
        output=tensor_spec("detections" if detector else "probs", "float32", out_shape),
        source={"model": path.name, "sha256": sha256_file(path), "config": None})
    if detector:   # the raw offsets + logits; serving.tasks.detect decodes them like the files do
        meta["detection"] = {**metadata_block(contract.detection), "outputs": f"raw (N, A, {width})"}
    meta["producer"] = {**meta["producer"], "synthesised": True}
    return meta


READERS = {".tflite": read_tflite_metadata, ".onnx": read_onnx_metadata}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The artifact document of any supported file; ArtifactError if absent or broken."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return keras_metadata(path)
    if suffix not in READERS:
        raise ArtifactError(f"{path}: unsupported model file suffix {suffix or '(none)'!r} "
                            f"(supported: {', '.join(sorted([*READERS, '.keras']))})")
    meta = READERS[suffix](path)
    if meta is None:
        raise ArtifactError(f"{path}: has no {METADATA_KEY!r} artifact metadata (export it with "
                            "`python -m pipeline export`, or embed one with serving.metadata)")
    return meta
