"""Data-parallel training: MirroredStrategy over two logical CPU devices, and a two-worker
MultiWorkerMirroredStrategy run on 127.0.0.1 (TF_CONFIG), each in fresh processes."""
import json
import subprocess
import sys

import numpy as np
import pytest
from train_helpers import ROOT, TINY, env, free_ports, train_cmd

from pipeline.strategy import read_tf_config, resolve_kind

# Splits the one physical CPU into two logical devices before TensorFlow starts, then trains.
TWO_CPUS = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pipeline.config import load_config
from pipeline.train import TrainConfig, train
result = train(load_config(TrainConfig, sys.argv[1:]))
print("METRICS " + json.dumps(result.metrics))
"""


def test_mirrored_over_two_logical_cpus(tmp_path):
    r = subprocess.run([sys.executable, "-c", TWO_CPUS, *TINY, "epochs=2", "strategy=mirrored",
                        f"out={tmp_path}"], cwd=ROOT, env=env(), capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads(r.stdout.split("METRICS ", 1)[1])
    assert metrics["strategy"] == "mirrored" and metrics["replicas"] == 2
    assert metrics["engine"].startswith("keras ") and metrics["epochs_run"] == 2
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_two_workers_finish_with_the_same_weights(tmp_path):
    from models import load_model

    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [*TINY, "epochs=2", f"out={tmp_path}", "strategy=multi_worker"]
    procs = [subprocess.Popen(train_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True,
                              env=env(TF_CONFIG=json.dumps({"cluster": cluster,
                                                            "task": {"type": "worker", "index": i}})))
             for i in range(2)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300))
    finally:
        for p in procs:   # a worker whose peer died would wait forever on its collectives
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    dirs = [tmp_path, tmp_path / "worker-1"]
    metrics = [json.loads((d / "metrics.json").read_text()) for d in dirs]
    for m in metrics:
        assert m["strategy"] == "multi_worker" and m["workers"] == 2 and m["replicas"] == 2
        assert m["engine"].startswith("tf_keras")
    chief, worker = (load_model(d / "model.keras").get_weights() for d in dirs)
    assert len(chief) == len(worker) > 0
    for a, b in zip(chief, worker):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]


@pytest.mark.parametrize("tf_config,kind", [
    (None, "default"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}', "default"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}', "multi_worker"),
])
def test_auto_strategy_reads_tf_config(tf_config, kind):
    spec = read_tf_config({"TF_CONFIG": tf_config} if tf_config else {})
    assert resolve_kind("auto", spec) == kind   # no GPU on the test machines


def test_bad_tf_config_is_one_line():
    from models.options import OptionError

    with pytest.raises(OptionError, match="TF_CONFIG: not a valid cluster spec"):
        read_tf_config({"TF_CONFIG": '{"cluster": '})
