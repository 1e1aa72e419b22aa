"""Keep native libraries' INFO chatter off the terminal, and nothing else.

TensorFlow 2.21 prints "Could not find cuda drivers ..." and the oneDNN notice through absl
before TF_CPP_MIN_LOG_LEVEL is read, and LiteRT prints "INFO: Created TensorFlow Lite XNNPACK
delegate for CPU." from C++: neither goes through Python, so neither can be silenced from it.
`filtered()` points file descriptor 2 at a temporary file for the duration of a block (a
TensorFlow import, an interpreter's creation) and then writes back every line that is not an
INFO line, so warnings and errors still show, in order. Python's own sys.stderr is flushed
before and keeps working (it writes to the same descriptor).

The knob is TensorFlow's own: TF_CPP_MIN_LOG_LEVEL=0 (what `verbose=2` sets) shows everything;
the CLIs default it to 3 and anything above 0 hides INFO lines.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

# absl INFO ("I1201 09:11:07.123 1234 file.cc:31] ..."), absl's own banner, TFLite's "INFO: ..."
INFO_LINE = re.compile(r"^(I\d{4} [\d:.]+\s+\d+ \S+:\d+\] |INFO: |WARNING: All log messages "
                       r"before absl::InitializeLog\(\) is called are written to STDERR)")
# grappler's cost estimator on ops it has no model for (CropAndResize: detection augmentation),
# twice per epoch, at any TF_CPP_MIN_LOG_LEVEL below 2: never actionable
NOISE_LINE = re.compile(r"^W\d{4} [\d:.]+\s+\d+ op_level_cost_estimator\.cc:\d+\] ")
_lock = threading.Lock()   # one redirection at a time (the demo serves from several threads)


def show_info() -> bool:
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0")


def keep(text: str) -> str:
    """`text` without its INFO lines."""
    return "".join(line for line in text.splitlines(keepends=True) if not INFO_LINE.match(line))


@contextlib.contextmanager
def filtered() -> Iterator[None]:
    """Drop the INFO lines native code writes to stderr inside the block (see module doc)."""
    if show_info():
        yield
        return
    with _lock, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = keep(tmp.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


def _level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() or 0)
    except ValueError:
        return 0


@contextlib.contextmanager
def without_noise() -> Iterator[None]:
    """Drop NOISE_LINE lines from what native code writes to stderr while the block runs (a
    training), passing every other line on as it comes. Nothing to do when TensorFlow already
    hides its warnings (TF_CPP_MIN_LOG_LEVEL >= 2, the CLIs' default)."""
    if _level() >= 2:
        yield
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as src:
            for line in src:
                if not NOISE_LINE.match(line.decode("utf-8", "replace")):
                    try:
                        os.write(saved, line)
                    except OSError:
                        return

    thread = threading.Thread(target=pump, daemon=True, name="stderr-filter")
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)          # the pipe's last write end closes: the pump reads to its end
        thread.join(timeout=5)
        os.close(saved)


def import_tensorflow() -> None:
    """Import TensorFlow (if installed and not yet imported) with its INFO lines dropped."""
    if "tensorflow" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    with filtered():
        import tensorflow  # noqa: F401
