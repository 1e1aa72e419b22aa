"""Faults and concurrency (issue 20, causes 10-12): two exports of one folder at once, a SIGKILLed
export, a full disk during training. Real CLI processes; the smallest model the export tests use."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import ROOT, TINY, env, train_cmd


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 16x16x1 conv net with a softmax head (digits labels), saved with its contract."""
    import keras

    from models import save_model, set_contract
    from models.contract import DataContract
    from pipeline.data.digits import CLASS_NAMES

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="normalize")(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    contract = DataContract(input_shape=(16, 16, 1), labels=CLASS_NAMES, mean=(0.0,), std=(255.0,))
    path = tmp_path_factory.mktemp("tiny_export") / "m.keras"
    save_model(set_contract(keras.Model(inp, probs), contract), path)
    return path


def _export(model: Path, out: Path, tmpdir: Path) -> subprocess.Popen:
    tmpdir.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "pipeline", "export", f"model={model}", "calib=digits",
                             "formats=tflite_fp32", "verbose=false", f"out={out}"],
                            cwd=ROOT, env=env(TMPDIR=str(tmpdir)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_two_exports_of_one_folder_at_once_one_wins_the_other_says_so(tiny_model, tmp_path):
    out = tmp_path / "export"
    procs = [_export(tiny_model, out, tmp_path / "tmp") for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results              # never both "successful"
    (loser,) = [err for rc, err in results if rc != 0]
    assert "another export" in loser and "Traceback" not in loser
    assert {p.name for p in out.iterdir()} >= {"manifest.json", "model_fp32.tflite"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_sigkilled_export_leaves_no_worker_and_its_leftovers_are_swept(tiny_model, tmp_path):
    out, tmpdir = tmp_path / "export", tmp_path / "tmp"
    proc = _export(tiny_model, out, tmpdir)
    worker = None
    try:
        deadline = time.time() + 120
        while worker is None and time.time() < deadline and proc.poll() is None:
            kids = _children(proc.pid)
            worker = kids[0] if kids and list(tmp_path.glob(".export.staging-*")) else None
            time.sleep(0.05)
        assert worker is not None, "the export's worker never started"
        time.sleep(1.0)                                          # it is loading TensorFlow now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.time()
        while _running(worker) and time.time() - t0 < 3:
            time.sleep(0.05)
        assert not _running(worker), "the worker outlived its killed parent"
    finally:
        if worker is not None and _running(worker):
            os.kill(worker, signal.SIGKILL)
    assert list(tmp_path.glob(".export.staging-*")) and list(tmpdir.glob("cnn-export-*"))   # left
    again = _export(tiny_model, out, tmpdir)
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert not list(tmp_path.glob(".export.staging-*"))         # swept by the next export
    assert not list(tmpdir.glob("cnn-export-*"))
    assert (out / "manifest.json").is_file()


def test_a_full_disk_during_training_is_one_line_and_leaves_no_model(tmp_path):
    def small_files():   # writes past 60 kB fail with EFBIG, as a full disk fails with ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    out = tmp_path / "run"
    proc = subprocess.run(train_cmd(*TINY, "epochs=1", f"out={out}"), cwd=ROOT, env=env(),
                          capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    lines = [s for s in proc.stderr.splitlines() if s.strip()]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("error: ") and "model.keras" in lines[-1] and "too large" in lines[-1]
    assert not [p.name for p in out.rglob("*") if "model" in p.name]   # nothing partial


def test_the_export_lock_is_exclusive_and_leaves_nothing(tmp_path):
    from pipeline.export.errors import ExportError
    from pipeline.export.staging import lock_out

    out = tmp_path / "export"
    (tmp_path / ".export.staging-dead").mkdir()                 # what a killed export left
    first = lock_out(out)
    assert not (tmp_path / ".export.staging-dead").exists()     # swept under the lock
    with pytest.raises(ExportError, match=rf"out={out}: another export \(pid {os.getpid()}\)"):
        lock_out(out)
    first.release()
    assert list(tmp_path.iterdir()) == []                       # the lock file goes with it
    lock_out(out).release()
