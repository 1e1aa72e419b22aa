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


def die_with_parent(parent: int | None) -> None:
    """In a worker: end the moment the parent process `parent` dies, so a SIGKILLed CLI leaves no
    worker writing on. Linux: the kernel sends SIGKILL (prctl PR_SET_PDEATHSIG), even while
    native code holds the GIL; elsewhere a thread polls the parent pid."""
    import sys
    import threading
    import time

    if parent is None:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:   # it died before the line above
        os._exit(137)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(137)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def crash_message(rc: int, fmt: str | None, log: Path) -> str:
    what = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    lines = [s.strip() for s in log.read_text(errors="replace").splitlines() if s.strip()]
    hint = next((s for s in reversed(lines) if "error" in s.lower()), lines[-1] if lines else "")
    stage = fmt or "loading the model"
    return f"{stage}: the converter process died ({what}){f'; last error: {hint[:200]}' if hint else ''}"
