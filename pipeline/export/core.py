"""`export(cfg)`: model -> every requested file format, each gated, then published at once.

Steps (nothing is written to the output folder until the last one):
  1. validate the request against the export table, resolve the run and its data (no TF);
  2. sample calibration images (training split) and the held-out test split;
  3. a worker process (pipeline.export.worker) loads the Keras model, computes its reference
     probabilities and converts every format into a hidden staging folder beside `out`;
  4. the parity gate runs every file through `serving` and compares it with Keras;
  5. manifest.json + export_config.yaml are written, then the staging folder is renamed onto
     `out` (a previous export there is replaced only now).
No dead end: a file that cannot be made (converter error or crash) or fails its gate is left
out, listed in manifest.json's "failed" with its reasons, and every file that passed is
published; the export then fails (IncompleteExportError, exit status 1) only when the user named
that format in formats= (the default list is "what applies", so a failing optional file is a
note, not a stop). strict=true keeps all-or-nothing: any failure publishes nothing. An export
where no file passed publishes nothing either (a previous export in `out` stays). A bad option,
an error before the first file or Ctrl-C delete the staging folder: nothing half-written is ever
left in `out`.
"""
from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.options import OptionError
from pipeline.compress.sparsity import file_sparsity
from pipeline.config import save_config
from pipeline.export import placement
from pipeline.export.config import ExportConfig
from pipeline.export.errors import ExportError, GateError, IncompleteExportError
from pipeline.export.formats import FORMATS, check_request, formats_for
from pipeline.export.job import reference_paths
from pipeline.export.repair import REPAIRABLE
from pipeline.export.sources import Run, load_images, resolve_run
from pipeline.export.staging import lock_out, scratch_prefix
from pipeline.tasks import get_task
from pipeline.workers import ROOT, crash_message, worker_env
from serving.manifest import sha256_file, write_manifest

CONFIG_NAME = "export_config.yaml"


@dataclass
class ExportResult:
    out_dir: Path
    manifest: Path
    artifacts: list[dict[str, Any]]    # the manifest rows (file, format, sha256, size, parity)
    failed: list[dict[str, Any]] = field(default_factory=list)   # manifest's "failed": not published


def resolve_out(cfg: ExportConfig, run: Run) -> Path:
    out = Path(cfg.out).expanduser() if cfg.out else (run.run_dir or run.model_path.parent) / "export"
    if out.exists() and not out.is_dir():
        raise OptionError(f"out={out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise OptionError(f"out={out}: folder exists and is not an export (no manifest.json); "
                          "choose another out= or empty it")
    return out


def run_worker(job: dict[str, Any], scratch: Path, verbose: bool
               ) -> tuple[dict[str, str], dict[str, Any]]:
    """Run the conversion worker on `job`: ({format: why its file could not be made} (empty: every
    file was written), {format: its int8 diagnosis and repair record}). A crash ends the item it
    was on; the worker is started again for the rest. Raises ExportError when the run cannot go
    on (strict, a crash in strict mode, or an error before the first file)."""
    failed: dict[str, str] = {}
    repairs: dict[str, Any] = {}
    pending = list(job["items"])
    bar = tqdm(total=len(pending), desc="export", unit="file", disable=not verbose)
    try:
        while pending:
            current, error, rc = _worker_pass({**job, "items": pending}, scratch, bar, failed, repairs)
            if error:
                raise ExportError(error)
            if rc == 0:
                break
            message = crash_message(rc, current, scratch / "worker.log")
            if current is None or job.get("strict"):
                raise ExportError(message)
            failed[current] = message
            bar.update(1)
            names = [i["format"] for i in pending]
            pending = pending[names.index(current) + 1:]
    finally:
        bar.close()
    return failed, repairs


def _worker_pass(job: dict[str, Any], scratch: Path, bar: Any, failed: dict[str, str],
                 repairs: dict[str, Any]) -> tuple[str | None, str | None, int]:
    """One worker process over job["items"]: (the format it was on, a fatal error, exit status)."""
    job_path = scratch / "job.json"
    job_path.write_text(json.dumps(job))
    current, error = None, None
    with open(scratch / "worker.log", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.export.worker", str(job_path)],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=worker_env(),
                                cwd=str(ROOT))
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if event["event"] == "start":
                    current = event["format"]
                    bar.set_postfix_str(current)
                elif event["event"] in ("done", "failed"):
                    if event["event"] == "failed":
                        failed[event["format"]] = event["message"]
                    current = None
                    bar.update(1)
                elif event["event"] == "repair":
                    repairs[event["format"]] = event["record"]
                elif event["event"] == "error":
                    error = event["message"]
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return current, error, rc


def _publish(staging: Path, out: Path) -> None:
    """Swap the finished staging folder onto `out` with renames (same parent folder)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def failure_lines(failed: list[dict[str, Any]]) -> list[str]:
    """One line per reason a file was not published: "format (file): reason", with what the int8
    repair did: the file that replaced it, or the layers the diagnosis ranked worst."""
    return [f"{r['format']} ({r['file']}): {why}{repair_note(r)}" for r in failed for why in r["reasons"]]


def repair_note(r: dict[str, Any]) -> str:
    """'; repaired: <file>', '; worst int8 layers: a, b, c (...)' or ''."""
    if r.get("repaired_by"):
        return f"; repaired: {r['repaired_by']}"
    record = r.get("int8_repair") or {}
    worst = [x["layer"] for x in (record.get("diagnosis") or {}).get("layers", [])[:3]]
    if not worst:
        return ""
    tried = len(record.get("attempts") or [])
    return (f"; worst int8 layers: {', '.join(worst)}"
            + (f" ({tried} repairs tried, none passed)" if tried else ""))


def _summary(rows: list[dict[str, Any]], columns: Any) -> str:
    """The table printed after an export: the task's columns (Task.summary_columns)."""
    lines = [f"{'file':<30}" + "".join(f"{head:>{w}}" for head, w, _, _ in columns)]
    for r in rows:
        lines.append(f"{r['file']:<30}" + "".join(f"{get(r, r['parity']):>{w}{fmt}}"
                                                  for _, w, fmt, get in columns))
    return "\n".join(lines)


def _judge_all(items: list[dict[str, Any]], repairs: dict[str, Any], not_made: dict[str, str],
               job: dict[str, Any], run: Run, task: Any, images: Any, staging: Path, cfg: ExportConfig
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The parity gate on every file in staging: (manifest rows of those that passed, records of
    those that failed or could not be made). A repaired int8 file (repairs: the worker's records)
    is judged after its plain one."""
    references = {kind: np.load(path) for kind, path in reference_paths(job).items()}
    references["model"] = task.unpack_reference(references["model"])
    origin_accuracy = None
    if "origin" in references:   # the uncompressed source run (a classifier), same test images
        origin_accuracy = float(np.mean(references["origin"].argmax(1) == images.test_labels))
    queue = []
    for item in items:
        queue.append(item)
        result = (repairs.get(item["format"]) or {}).get("result")
        if result and result["file"] != item["file"]:   # the mixed-precision file
            queue.append({**item, "file": result["file"], "options": {**item["options"], "io": "float"}})
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for item in tqdm(queue, desc="parity", unit="file", disable=not cfg.verbose):
        spec = FORMATS[item["format"]]
        if spec.name in not_made:
            failed.append({"file": item["file"], "format": spec.name, "options": item["options"],
                           "stage": "conversion", "reasons": [not_made[spec.name]]})
            continue
        reference = references["qat" if spec.runs == ("qat",) else "model"]
        path = staging / item["file"]
        parity = task.parity(path, spec, images, reference, cfg.gate)
        parity["test_set"] = images.test_info
        parity["reference"] = "qat graph" if spec.runs == ("qat",) else run.model_path.name
        if origin_accuracy is not None:
            parity["accuracy_source"] = origin_accuracy
            parity["accuracy_change_vs_source"] = parity["accuracy"] - origin_accuracy
        row = {"file": item["file"], "format": spec.name, "options": item["options"],
               "size_gzip_bytes": len(gzip.compress(path.read_bytes(), 9)),
               "sparsity": file_sparsity(path)["overall"], "parity": parity,
               "accelerator": placement.check(path)}   # information, never a gate
        record = repairs.get(spec.name)
        if record:
            row["int8_repair"] = record
        if parity["passed"]:
            rows.append(row)
            continue
        failed.append({**row, "stage": "gate", "size_bytes": path.stat().st_size,
                       "reasons": parity["reasons"]})
    published = {r["file"] for r in rows}
    for f in failed:   # a plain int8 file whose mixed-precision repair passed
        result = (f.get("int8_repair") or {}).get("result") or {}
        if result.get("file") in published and result["file"] != f["file"]:
            f["repaired_by"] = result["file"]
    return rows, failed


def export(cfg: ExportConfig) -> ExportResult:
    """Export cfg.model to cfg.formats under the parity gate; see the module docstring."""
    cfg.validate()
    run = resolve_run(cfg.model, cfg.calib)
    task = get_task(run.contract.task)
    specs = check_request(cfg.formats or formats_for(run.kind, task), cfg.format_options(), task)
    needs_qat = [s.name for s in specs if s.runs == ("qat",)]
    if needs_qat and run.kind != "qat":
        raise OptionError(f"formats: {', '.join(needs_qat)} needs a QAT run (python -m pipeline "
                          f"compress from={cfg.model} method=qat); model={cfg.model} is not one")
    out = resolve_out(cfg, run)
    given = cfg.format_options()
    items = [{"format": s.name, "file": s.filename(s.resolved_options(given)),
              "options": s.resolved_options(given)} for s in specs]
    n_calib = max((i["options"]["calib_samples"] for i in items if FORMATS[i["format"]].calibrated),
                  default=0)
    repairing = task.int8_repair and any(i["format"] in REPAIRABLE for i in items)
    extra = n_calib * cfg.int8.extra_calib if repairing and cfg.int8.repair == "auto" else 0
    images = load_images(run, task, calib_samples=n_calib, test_samples=cfg.gate.samples, seed=cfg.seed,
                         extra_calib=extra)
    source = {"model": run.model_path.name, "sha256": sha256_file(run.model_path),
              "config": run.config, "compression": run.compression}

    out.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_out(out)   # one export of `out` at a time; what killed ones left is swept
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)   # mkdtemp's 0700 would make the published folder private
    scratch = Path(tempfile.mkdtemp(prefix=scratch_prefix()))
    try:
        job = {"model": str(run.model_path.resolve()), "staging": str(staging),
               "scratch": str(scratch), "items": items, "parent": os.getpid(), "strict": cfg.strict,
               "source": source, "test": str(scratch / "test.npy"),
               "reference": str(scratch / "reference.npy"), "calibration": None,
               "calibration_info": images.calibration_info if n_calib else None,
               "qat_graph": str(run.qat_graph) if run.qat_graph else None,
               "origin": str(run.origin) if run.origin else None,
               "int8": asdict(cfg.int8), "gate_images": None}
        np.save(job["test"], images.test)
        if repairing:   # the worker gates int8 files itself to repair them (pipeline.export.repair)
            job["gate_images"] = str(scratch / "gate.pkl")
            with open(job["gate_images"], "wb") as f:
                pickle.dump((images, cfg.gate), f)
        if images.calibration is not None:
            job["calibration"] = str(scratch / "calibration.npy")
            np.save(job["calibration"], images.calibration)
        not_made, repairs = run_worker(job, scratch, cfg.verbose)
        rows, failed = _judge_all(items, repairs, not_made, job, run, task, images, staging, cfg)
        lines = failure_lines(failed)
        if lines and (cfg.strict or not rows):
            raise GateError(lines, failed)
        for row in failed:   # a file that failed its gate is not published
            (staging / row["file"]).unlink(missing_ok=True)
        manifest = write_manifest(staging, {**source, "path": str(run.model_path)}, rows,
                                  failed=failed)
        save_config(cfg, staging / CONFIG_NAME)
        rows = json.loads(manifest.read_text())["artifacts"]
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        lock.release()
    result = ExportResult(out, out / "manifest.json", rows, failed)
    if cfg.verbose:
        print(_summary(rows, task.summary_columns))
        print(f"wrote {len(rows)} files, manifest.json and {CONFIG_NAME} to {out}")
        if lines:
            print(f"not published ({len(failed)} failed; reasons in manifest.json's \"failed\"):\n  "
                  + "\n  ".join(lines))
    asked = [r for r in failed if r["format"] in cfg.formats and not r.get("repaired_by")]
    if asked:   # the user named these files and did not get them: the command fails
        raise IncompleteExportError(failure_lines(asked), result)
    return result
