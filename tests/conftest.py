import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A real, briefly trained run dir: resnet18 width 0.25 at 32x32x1 on `digits` (~97% test
    accuracy), saved as the training stage does: model.keras + config.yaml with a data section.
    Confident predictions make the export gate's agreement numbers meaningful."""
    from train_helpers import digits_source

    return digits_source(tmp_path_factory.mktemp("digits_run"), "resnet18")


@pytest.fixture(scope="session")
def digits_export(digits_run):
    """digits_run exported to every format of a trained run (int8 with uint8 I/O) into
    digits_run/export."""
    from pipeline.config import load_config
    from pipeline.export import ExportConfig, export

    return export(load_config(ExportConfig, [f"model={digits_run}", "io=uint8", "verbose=false"]))


@pytest.fixture(scope="session")
def demo_runs_root(tmp_path_factory):
    """A runs root holding one tiny exported run (tests/demo_runs.py), built once per session."""
    from tests.demo_runs import build_run

    root = tmp_path_factory.getbasetemp() / "demo-runs"
    build_run(root)
    return root


@pytest.fixture(scope="session")
def det_runs_root(tmp_path_factory):
    """A runs root holding one tiny, really trained and exported detector run (tests/demo_runs.py
    build_det_run: tflite_fp32, tflite_int8, onnx), built once per session."""
    from tests.demo_runs import build_det_run

    root = tmp_path_factory.getbasetemp() / "det-runs"
    build_det_run(root)
    return root
