"""A training run killed with SIGKILL resumes from its last backed-up epoch when re-run."""
import csv
import json
import os
import signal
import subprocess
import time

import pytest
from train_helpers import ROOT, TINY, env, run_cli, train_cmd

from models.options import OptionError
from pipeline import rundir

EPOCHS = 12


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _backed_up_epoch(metadata):
    try:
        return json.loads(metadata.read_text())["epoch"]
    except (OSError, ValueError, KeyError):   # not there yet, or being rewritten
        return 0


def test_sigkill_then_same_command_resumes(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, f"epochs={EPOCHS}", f"out={out}"]
    metadata = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(train_cmd(*args), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while _backed_up_epoch(metadata) < 2:   # two epochs done and backed up
            assert proc.poll() is None, f"training ended before it was killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no backup within 180 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _backed_up_epoch(metadata)   # the epoch the re-run starts from
    assert 2 <= killed_at < EPOCHS and not (out / "metrics.json").exists()
    first = _rows(out / "logs" / "train.csv")
    assert len(first) >= killed_at

    r = run_cli(*args)   # the very same command
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"Epoch {killed_at + 1}/{EPOCHS}" in r.stdout and "Epoch 1/" not in r.stdout
    rows = _rows(out / "logs" / "train.csv")
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))   # each epoch exactly once
    sessions = [int(row["session"]) for row in rows]
    assert sessions == [1] * killed_at + [2] * (EPOCHS - killed_at)
    assert rows[:killed_at] == first[:killed_at]                        # old rows kept as they were
    # the weights were restored, not re-initialised: the resumed epoch starts far below epoch 1's loss
    assert float(rows[killed_at]["loss"]) < float(rows[0]["loss"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == killed_at and metrics["epochs_run"] == EPOCHS
    assert not (out / "backup").exists()


def _fake_interrupted_run(tmp_path, config):
    paths = rundir.run_paths(tmp_path)
    paths.backup.mkdir(parents=True)
    (paths.backup / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    paths.config.write_text(json.dumps(config))   # JSON is YAML
    return paths


def test_resume_refuses_other_options(tmp_path):
    saved = {"lr": 0.01, "epochs": 10, "model": {"name": "lenet_bn", "options": {}}}
    paths = _fake_interrupted_run(tmp_path, saved)
    assert rundir.prepare(paths, {**saved, "epochs": 20}, overwrite=False) is True   # more epochs: fine
    with pytest.raises(OptionError) as e:
        rundir.prepare(paths, {**saved, "lr": 0.1, "model": {"name": "resnet18", "options": {}}},
                     overwrite=False)
    assert "interrupted run made with other options" in str(e.value)
    assert "lr: 0.01 -> 0.1" in str(e.value) and "model.name: 'lenet_bn' -> 'resnet18'" in str(e.value)
    assert rundir.prepare(paths, {**saved, "lr": 0.1}, overwrite=True) is False
    assert not paths.backup.exists()


def test_run_killed_before_its_first_backup_starts_over(tmp_path):
    paths = rundir.run_paths(tmp_path)
    paths.log.parent.mkdir(parents=True)
    paths.log.write_text("epoch,session\n0,1\n")
    assert rundir.prepare(paths, {}, overwrite=False) is False
    assert not paths.log.exists()
