"""`manifest.json`: the list of files an export wrote, with their sha256 and size.

    {"schema": "cnn-pipeline/manifest/v1", "source": {...},
     "artifacts": [{"file": "model_int8.tflite", "format": "tflite_int8", "sha256": "...",
                    "size_bytes": N, "parity": {...}}, ...]}

The runtime checks a file it loads against the manifest beside it, so a file that was damaged
in transfer or swapped by hand is refused with one clear line instead of giving wrong answers.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.atomic import write_json
from serving.metadata import ArtifactError, sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "cnn-pipeline/manifest/v1"
__all__ = ["MANIFEST_NAME", "MANIFEST_SCHEMA", "find_entry", "read_manifest", "sha256_file",
           "verify_file", "write_manifest"]


def write_manifest(export_dir: str | os.PathLike, source: Mapping[str, Any],
                   artifacts: Sequence[Mapping[str, Any]],
                   failed: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write export_dir/manifest.json (atomically) for files already in export_dir.

    Each artifact needs "file" (a name inside export_dir) and "format"; sha256 and size_bytes
    are computed from the file (a given value that disagrees is an error); other keys such
    as "parity" are kept as given. `failed`: files the export could not make or that failed
    their gate (not in export_dir), each with its "reasons"; written as "failed" when any."""
    export_dir = Path(export_dir)
    rows = []
    for art in artifacts:
        name, fmt = art.get("file"), art.get("format")
        if not name or not fmt:
            raise ArtifactError(f"{export_dir / MANIFEST_NAME}: each artifact needs 'file' and "
                                f"'format', got {dict(art)!r}")
        path = export_dir / name
        if Path(name).name != name or not path.is_file():
            raise ArtifactError(f"{path}: listed for the manifest but not a file in {export_dir}")
        row = {**art, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}
        for key in ("sha256", "size_bytes"):
            if art.get(key) is not None and art[key] != row[key]:
                raise ArtifactError(f"{path}: given {key} {art[key]!r} does not match "
                                    f"the file ({row[key]!r})")
        rows.append(row)
    names = [r["file"] for r in rows]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{export_dir / MANIFEST_NAME}: a file is listed twice ({names})")
    return write_json(export_dir / MANIFEST_NAME,
                      {"schema": MANIFEST_SCHEMA, "source": dict(source), "artifacts": rows,
                       **({"failed": [dict(f) for f in failed]} if failed else {})})


def read_manifest(dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest in `dir` (or the manifest file itself), None when there is none."""
    path = Path(dir)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ArtifactError(f"{path}: not valid JSON (nested too deep)") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        got = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArtifactError(f"{path}: manifest schema {got!r} is not supported "
                            f"(this runtime reads {MANIFEST_SCHEMA!r})")
    arts = manifest.get("artifacts")
    if not isinstance(arts, list) or not all(isinstance(a, dict) and "file" in a for a in arts):
        raise ArtifactError(f"{path}: 'artifacts' must be a list of objects with a 'file' key")
    manifest["path"] = str(path)  # where it was read from, for error messages
    return manifest


def find_entry(manifest: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    return next((a for a in manifest["artifacts"] if a["file"] == name), None)


def verify_file(path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Check `path` against its manifest entry (size, then sha256); ArtifactError if it is not
    listed or does not match."""
    path = Path(path)
    where = manifest.get("path", MANIFEST_NAME)
    entry = find_entry(manifest, path.name)
    if entry is None:
        raise ArtifactError(f"{path}: not listed in {where}")
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file (listed in {where})")
    size = path.stat().st_size
    if entry.get("size_bytes") is not None and size != entry["size_bytes"]:
        raise ArtifactError(f"{path}: size {size} bytes does not match {where} "
                            f"({entry['size_bytes']} bytes); the file was changed or damaged")
    digest = sha256_file(path)
    if digest != entry.get("sha256"):
        raise ArtifactError(f"{path}: sha256 {digest[:12]}... does not match {where} "
                            f"({str(entry.get('sha256'))[:12]}...); the file was changed or damaged")
