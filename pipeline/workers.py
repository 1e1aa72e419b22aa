"""Child processes of the pipeline (the export worker, the compression worker): the environment
they start with and the one line that says how one died."""
from __future__ import annotations

import os
import signal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the project root, for the workers' imports


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def crash_message(rc: int, fmt: str | None, log: Path) -> str:
    what = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    lines = [s.strip() for s in log.read_text(errors="replace").splitlines() if s.strip()]
    hint = next((s for s in reversed(lines) if "error" in s.lower()), lines[-1] if lines else "")
    stage = fmt or "loading the model"
    return f"{stage}: the converter process died ({what}){f'; last error: {hint[:200]}' if hint else ''}"
