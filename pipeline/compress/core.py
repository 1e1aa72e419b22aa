"""`compress(cfg)`: validate, then fine-tune in a worker process of its own, return the run.

The parent never imports TensorFlow or tfmot: it checks the request (pipeline.compress.config),
starts pipeline.compress.worker with the config as JSON, lets its output through, and turns the
worker's one-line error (or a crash) into an exception. Re-running the same command after a
kill resumes the fine-tune (the worker's pipeline.train uses BackupAndRestore); the worker exits
when its parent dies, so a SIGKILLed command leaves no training behind.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.options import OptionError
from pipeline.compress.config import CompressConfig, CompressError
from pipeline.config import to_dict
from pipeline.workers import ROOT, worker_env


@dataclass
class CompressResult:
    run_dir: Path
    metrics: dict[str, Any]

    @property
    def model(self) -> Path:
        return self.run_dir / "model.keras"


def compress(cfg: CompressConfig) -> CompressResult:
    """Compress cfg.start with cfg.method into cfg.run_dir(); see the module docstring."""
    cfg.validate()
    out = cfg.run_dir()
    with tempfile.TemporaryDirectory(prefix="cnn-compress-") as scratch:
        job = {"config": to_dict(cfg), "out": str(out), "result": str(Path(scratch) / "result.json")}
        job_path = Path(scratch) / "job.json"
        job_path.write_text(json.dumps(job))
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.compress.worker", str(job_path)],
                                env=worker_env(), cwd=str(ROOT))
        try:
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        result_path = Path(job["result"])
        result = json.loads(result_path.read_text()) if result_path.is_file() else None
    if result is None:
        what = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        raise CompressError(f"compress: the worker process died ({what}; its log is above); "
                            f"re-running the same command resumes from the last finished epoch in {out}")
    if not result["ok"]:
        raise (OptionError if result["kind"] == "option" else CompressError)(result["message"])
    return CompressResult(out, json.loads((out / "metrics.json").read_text()))
