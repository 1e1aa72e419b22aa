"""`export(cfg)`: model -> every requested file format, each gated, then published at once.

Steps (nothing is written to the output folder until the last one):
  1. validate the request against the export table, resolve the run and its data (no TF);
  2. sample calibration images (training split) and the held-out test split;
  3. a worker process (pipeline.export.worker) loads the Keras model, computes its reference
     probabilities and converts every format into a hidden staging folder beside `out`;
  4. the parity gate runs every file through `serving` and compares it with Keras;
  5. manifest.json + export_config.yaml are written, then the staging folder is renamed onto
     `out` (a previous export there is replaced only now).
Any failure - bad option, converter error or crash, failed gate, Ctrl-C - deletes the staging
folder, so a run leaves either a complete, gated export or nothing.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.options import OptionError
from pipeline.compress.sparsity import file_sparsity
from pipeline.config import save_config
from pipeline.export.config import ExportConfig
from pipeline.export.errors import ExportError, GateError
from pipeline.export.formats import FORMATS, check_request, formats_for
from pipeline.export.job import reference_paths
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


def resolve_out(cfg: ExportConfig, run: Run) -> Path:
    out = Path(cfg.out).expanduser() if cfg.out else (run.run_dir or run.model_path.parent) / "export"
    if out.exists() and not out.is_dir():
        raise OptionError(f"out={out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise OptionError(f"out={out}: folder exists and is not an export (no manifest.json); "
                          "choose another out= or empty it")
    return out


def run_worker(job: dict[str, Any], scratch: Path, verbose: bool) -> None:
    """Run the conversion worker on `job`; raise ExportError on any failure or crash."""
    job_path = scratch / "job.json"
    job_path.write_text(json.dumps(job))
    log = scratch / "worker.log"
    bar = tqdm(total=len(job["items"]), desc="export", unit="file", disable=not verbose)
    current, error = None, None
    with open(log, "w") as err:
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
                elif event["event"] == "done":
                    bar.update(1)
                elif event["event"] == "error":
                    error = event["message"]
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            bar.close()
    if error:
        raise ExportError(error)
    if rc != 0:
        raise ExportError(crash_message(rc, current, log))


def _publish(staging: Path, out: Path) -> None:
    """Swap the finished staging folder onto `out` with renames (same parent folder)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _summary(rows: list[dict[str, Any]], columns: Any) -> str:
    """The table printed after an export: the task's columns (Task.summary_columns)."""
    lines = [f"{'file':<30}" + "".join(f"{head:>{w}}" for head, w, _, _ in columns)]
    for r in rows:
        lines.append(f"{r['file']:<30}" + "".join(f"{get(r, r['parity']):>{w}{fmt}}"
                                                  for _, w, fmt, get in columns))
    return "\n".join(lines)


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
    images = load_images(run, task, calib_samples=n_calib, test_samples=cfg.gate.samples, seed=cfg.seed)
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
               "scratch": str(scratch), "items": items, "parent": os.getpid(),
               "source": source, "test": str(scratch / "test.npy"),
               "reference": str(scratch / "reference.npy"), "calibration": None,
               "calibration_info": images.calibration_info if n_calib else None,
               "qat_graph": str(run.qat_graph) if run.qat_graph else None,
               "origin": str(run.origin) if run.origin else None}
        np.save(job["test"], images.test)
        if images.calibration is not None:
            job["calibration"] = str(scratch / "calibration.npy")
            np.save(job["calibration"], images.calibration)
        run_worker(job, scratch, cfg.verbose)
        references = {kind: np.load(path) for kind, path in reference_paths(job).items()}
        references["model"] = task.unpack_reference(references["model"])
        origin_accuracy = None
        if "origin" in references:   # the uncompressed source run (a classifier), same test images
            origin_accuracy = float(np.mean(references["origin"].argmax(1) == images.test_labels))

        rows, failures = [], []
        for item in tqdm(items, desc="parity", unit="file", disable=not cfg.verbose):
            spec = FORMATS[item["format"]]
            reference = references["qat" if spec.runs == ("qat",) else "model"]
            path = staging / item["file"]
            parity = task.parity(path, spec, images, reference, cfg.gate)
            parity["test_set"] = images.test_info
            parity["reference"] = "qat graph" if spec.runs == ("qat",) else run.model_path.name
            if origin_accuracy is not None:
                parity["accuracy_source"] = origin_accuracy
                parity["accuracy_change_vs_source"] = parity["accuracy"] - origin_accuracy
            failures += [f"{spec.name} ({item['file']}): {r}" for r in parity["reasons"]]
            rows.append({"file": item["file"], "format": spec.name, "options": item["options"],
                         "size_gzip_bytes": len(gzip.compress(path.read_bytes(), 9)),
                         "sparsity": file_sparsity(path)["overall"], "parity": parity})
        if failures:
            raise GateError(failures)
        manifest = write_manifest(staging, {**source, "path": str(run.model_path)}, rows)
        save_config(cfg, staging / CONFIG_NAME)
        rows = json.loads(manifest.read_text())["artifacts"]
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        lock.release()
    if cfg.verbose:
        print(_summary(rows, task.summary_columns))
        print(f"wrote {len(rows)} files, manifest.json and {CONFIG_NAME} to {out}")
    return ExportResult(out, out / "manifest.json", rows)
