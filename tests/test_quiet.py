"""Quiet, honest output: a normal CLI run prints no INFO lines from native code (TensorFlow's
cuda-stub/oneDNN notices at import, LiteRT's XNNPACK line); verbose=2 shows them; warnings and
errors always get through (serving.native_logs)."""
from __future__ import annotations

import os
import sys

from train_helpers import TINY, run_cli

from serving import native_logs

NOISE = ("Could not find cuda drivers", "oneDNN custom operations", "absl::InitializeLog")


def test_info_lines_are_dropped_and_the_rest_kept():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1796117994.732455   19472 cudart_stub.cc:31] Could not find cuda drivers\n"
            "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
            "W0000 00:00:1796119813.609962    1907 op_level_cost_estimator.cc:699] a real warning\n"
            "E0000 00:00:1796119811.100828    1907 cuda_platform.cc:52] an error\n"
            "progress 3/10\n")
    assert native_logs.keep(text) == ("W0000 00:00:1796119813.609962    1907 op_level_cost_estimator.cc:699] "
                                      "a real warning\nE0000 00:00:1796119811.100828    1907 "
                                      "cuda_platform.cc:52] an error\nprogress 3/10\n")


def test_filtered_block_drops_native_info_but_passes_other_lines(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_logs.filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 00:00:1.0 1 x.cc:1] kept\n")
        print("python stderr still works", file=sys.stderr)
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "kept" in err and "python stderr still works" in err
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    with native_logs.filtered():
        os.write(2, b"INFO: shown when asked for\n")
    assert "INFO: shown when asked for" in capfd.readouterr().err


def test_train_cli_is_quiet_and_verbose_2_shows_everything(tmp_path):
    args = [a for a in TINY if a != "verbose=2"] + ["epochs=1"]
    quiet = run_cli(*args, f"out={tmp_path / 'a'}")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr[-2000:]
    loud = run_cli(*TINY, "epochs=1", f"out={tmp_path / 'b'}")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "Could not find cuda drivers" in loud.stderr     # the filter is what hid it
