import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def demo_runs_root(tmp_path_factory):
    """A runs root holding one tiny exported run (tests/demo_runs.py), built once per session."""
    from tests.demo_runs import build_run

    root = tmp_path_factory.getbasetemp() / "demo-runs"
    build_run(root)
    return root
