"""Find the exported model files in run directories.

A run dir (`python -m pipeline run` / `train`) is `<runs root>/<name>/` and its export
(`python -m pipeline export`) is `<name>/export/` with model_*.tflite, model.onnx and
manifest.json. Runs may also be grouped one level deeper (`<root>/<group>/<name>/export`),
and the root may itself be a run dir or an export dir. Every .tflite/.onnx file found is
listed; the manifest adds its format, sha256 and parity figures. A run whose manifest cannot
be read is reported as a problem (one line), not a crash, and its files are still listed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.demo.settings import MODEL_SUFFIXES
from serving.manifest import MANIFEST_NAME, find_entry, read_manifest
from serving.metadata import ArtifactError

EXPORT_DIR = "export"
_PATTERNS = ("", EXPORT_DIR, f"*/{EXPORT_DIR}", f"*/*/{EXPORT_DIR}")   # relative to the root


@dataclass(frozen=True)
class Artifact:
    """One model file in a run's export folder."""
    run: str                          # run dir name relative to the root ("." for the root)
    path: Path
    size_bytes: int
    format: str | None = None         # from the manifest; None when the file is not listed
    sha256: str | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    manifest: Path | None = None      # the manifest listing this file
    recommended: bool = False         # the run's report.json recommends it for the machine it ran on

    @property
    def file(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        """One line for a select box: run / file · format · size · parity."""
        fmt = self.format or "not in a manifest"
        size = human_size(self.size_bytes)
        star = " · ★ recommended by the report" if self.recommended else ""
        return f"{self.run} / {self.file} · {fmt} · {size} · {parity_line(self.parity)}{star}"


@dataclass
class Catalog:
    root: Path
    artifacts: list[Artifact]
    problems: list[str]               # one line per unreadable run/manifest

    def default_index(self) -> int:
        """What the page opens on: the first run's recommended file (`pipeline report` chose it
        from latency measured on its machine), else the first file."""
        return next((i for i, a in enumerate(self.artifacts) if a.recommended), 0)


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"   # unreachable; keeps type checkers quiet


def parity_line(parity: dict[str, Any] | None) -> str:
    """'top-1 agree 1.000, max |dp| 2e-07', for a detector 'boxes reproduced 0.98, mAP@.5 drop
    0.000', or 'no parity figures'."""
    if parity and "reproduced" in parity:
        text = f"boxes reproduced {parity['reproduced']:.2f}"
        if parity.get("map50_drop") is not None:
            text += f", mAP@.5 drop {parity['map50_drop']:.3f}"
    elif not parity or "top1_agreement" not in parity:
        return "no parity figures"
    else:
        text = f"top-1 agree {parity['top1_agreement']:.3f}"
    if parity.get("max_abs_diff") is not None:
        text += f", max |dp| {parity['max_abs_diff']:.2g}"
    if parity.get("passed") is False:
        text += ", GATE FAILED"
    return text


def _is_export_dir(d: Path) -> bool:
    return d.is_dir() and ((d / MANIFEST_NAME).is_file()
                           or any(p.suffix.lower() in MODEL_SUFFIXES for p in d.iterdir()))


def _export_dirs(root: Path) -> list[Path]:
    found: dict[Path, Path] = {}   # resolved -> as found: a folder reached twice is listed once
    for pattern in _PATTERNS:
        for d in [root] if not pattern else sorted(root.glob(pattern)):
            if _is_export_dir(d):
                found.setdefault(d.resolve(), d)
    return list(found.values())


def _run_name(export_dir: Path, root: Path) -> str:
    run_dir = export_dir.parent if export_dir.name == EXPORT_DIR else export_dir
    try:
        rel = run_dir.relative_to(root)
    except ValueError:
        return run_dir.name
    return rel.as_posix() if rel.parts else (run_dir.name or ".")


def _recommended(export_dir: Path) -> str | None:
    """The file report.json (in the run dir above the export) recommends, if there is one."""
    report = (export_dir.parent if export_dir.name == EXPORT_DIR else export_dir) / "report.json"
    try:
        rec = json.loads(report.read_text(encoding="utf-8")).get("recommended") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return rec.get("file") if isinstance(rec, dict) else None


def scan_runs(root: str | Path) -> Catalog:
    """Every exported .tflite/.onnx under `root` (see module docstring), sorted by run, file."""
    root = Path(root)
    catalog = Catalog(root=root, artifacts=[], problems=[])
    if not root.is_dir():
        return catalog
    for export_dir in _export_dirs(root):
        manifest = None
        try:
            manifest = read_manifest(export_dir)
        except ArtifactError as e:
            catalog.problems.append(str(e))
        run = _run_name(export_dir, root)
        best = _recommended(export_dir)
        for path in sorted(p for p in export_dir.iterdir() if p.suffix.lower() in MODEL_SUFFIXES
                           and p.is_file() and not p.name.startswith(".")):
            entry = find_entry(manifest, path.name) if manifest else None
            catalog.artifacts.append(Artifact(
                run=run, path=path, size_bytes=path.stat().st_size,
                format=(entry or {}).get("format"), sha256=(entry or {}).get("sha256"),
                parity=dict((entry or {}).get("parity") or {}),
                manifest=Path(manifest["path"]) if entry else None, recommended=path.name == best))
    catalog.artifacts.sort(key=lambda a: (a.run, a.file))
    return catalog
