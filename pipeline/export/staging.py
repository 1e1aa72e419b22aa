"""One export per output folder at a time, and what a killed export left behind swept away.

    lock = lock_out(out)     # ExportError when another export holds `out`; stale leftovers swept
    ...                      # stage, convert, gate, publish
    lock.release()

The lock is an advisory `flock` on `.<out>.lock` beside `out`, removed again on release: the
kernel drops the lock when its process dies, however it dies (SIGKILL included), so a crashed
export never blocks the next (its lock file is reused). While
it is held no other export of `out` is alive, so every `.<out>.staging-*` left there is stale
and is removed; a `.<out>.old-*` (the previous export, moved aside by a publish that was killed
halfway) is put back when `out` is missing. Scratch folders (`cnn-export-<pid>-*` in the temp
folder) are removed once their process is gone.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from pipeline.export.errors import ExportError

SCRATCH_PREFIX = "cnn-export-"
LEGACY_SCRATCH_AGE_S = 24 * 3600   # scratch without a pid in its name (older versions)


def scratch_prefix() -> str:
    """Prefix of this process's scratch folder: the pid says when it is stale."""
    return f"{SCRATCH_PREFIX}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True


class ExportLock:
    """The held lock on one output folder (lock_out)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def release(self) -> None:
        if self.fd >= 0:
            self.path.unlink(missing_ok=True)   # while still held: a newcomer sees it gone (lock_out)
            os.close(self.fd)                   # closing the descriptor drops the flock
            self.fd = -1

    def __del__(self) -> None:
        self.release()


def lock_out(out: Path) -> ExportLock:
    """Lock `out` for this export (out.parent must exist) and sweep stale leftovers."""
    import fcntl

    path = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ExportError(f"out={out}: another export (pid {holder}) is writing this folder; "
                              "wait for it to finish or choose another out=") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)   # its holder released (and removed) it as we opened it: take the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    lock = ExportLock(fd, path)
    sweep(out)
    return lock


def sweep(out: Path) -> list[Path]:
    """Remove what killed exports of `out` left (call with out's lock held); returns them."""
    removed = []
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if not out.exists():
            os.replace(old, out)   # a publish killed between its two renames: the old export back
        else:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    for stale in sorted(out.parent.glob(f".{out.name}.staging-*")):
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    for scratch in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        pid = scratch.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        try:
            stale = not _alive(int(pid)) if pid.isdigit() else (
                time.time() - scratch.stat().st_mtime > LEGACY_SCRATCH_AGE_S)
        except OSError:
            continue
        if stale and scratch.is_dir():
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(scratch)
    return removed
