"""Output a log can hold (issue 20, cause 13): one line per epoch when stdout is not a terminal
(Keras' progress bar would write a \\r update per step into the file), and TensorFlow's
cost-estimator warnings dropped from a training's stderr at any verbosity."""
import io
import os

from train_helpers import TINY, run_cli

ESTIMATOR = (b"W0000 00:00:1796119813.609962    1907 op_level_cost_estimator.cc:699] Error in "
             b"PredictCost() for the op: op: \"CropAndResize\" attr { key: \"T\" }\n")


def test_a_training_piped_to_a_file_logs_one_line_per_epoch(tmp_path):
    proc = run_cli(*[a for a in TINY if not a.startswith("verbose")], "verbose=1", "epochs=3",
                   f"out={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "\r" not in out and "\b" not in out                 # no progress-bar redraws
    assert sum(line.startswith("Epoch ") for line in out.splitlines()) == 3
    assert len(out) < 4000, len(out)


def test_fit_verbosity_keeps_the_bar_on_a_terminal():
    from pipeline.callbacks import fit_verbosity

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert fit_verbosity(1, Tty()) == 1 and fit_verbosity(1, io.StringIO()) == 2
    assert fit_verbosity(0, io.StringIO()) == 0 and fit_verbosity(2, Tty()) == 2


def test_cost_estimator_warnings_are_dropped_at_every_verbosity(capfd, monkeypatch):
    from serving import native_logs

    for level in ("0", "1"):                                   # verbose=2 sets 0: all of TF's lines
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
        with native_logs.without_noise():
            os.write(2, ESTIMATOR)
            os.write(2, b"W0000 00:00:1.0 1 other.cc:1] a real warning\n")
            os.write(2, ESTIMATOR)
        err = capfd.readouterr().err
        assert "op_level_cost_estimator" not in err and "a real warning" in err
