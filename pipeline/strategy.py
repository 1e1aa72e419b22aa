"""Where training runs: tf.distribute strategies for one device, all local GPUs, or many machines.

  default       tf.distribute's default strategy: one device (the GPU if there is one)
  mirrored      MirroredStrategy, synchronous data parallelism over every visible GPU; on a
                CPU-only machine over every logical CPU device (normally one, so the same code
                path runs everywhere; tests split the CPU in two)
  multi_worker  MultiWorkerMirroredStrategy, configured by the TF_CONFIG environment variable
                (cluster spec + this task), the engine TensorFlow ships for several machines
  auto          multi_worker when TF_CONFIG names more than one task, else mirrored when a GPU
                is visible, else default

`batch_size` is always the global batch: each step splits it across the replicas.

Multi-worker runs train with tf_keras (Keras 2), the model's twin from the same builder: Keras 3's
TensorFlow trainer does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585: its
symbolic build and metric reduction fail on the per-worker values). Everything else uses Keras 3.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from models.options import OptionError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


@dataclass(frozen=True)
class Placement:
    strategy: Any          # a tf.distribute.Strategy
    kind: str              # default | mirrored | multi_worker (auto resolved)
    engine: str            # "keras" or "tf_keras": the Keras that trains under this strategy
    worker_index: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def keras_module(self) -> Any:
        if self.engine == "tf_keras":
            import tf_keras
            return tf_keras
        import keras
        return keras


def read_tf_config(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The parsed TF_CONFIG, or None when unset; a malformed one is an OptionError."""
    raw = (environ if environ is not None else os.environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        int(task["index"])
        str(task["type"])
        if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
            raise TypeError("cluster must map job names to address lists")
    except (ValueError, KeyError, TypeError) as e:
        raise OptionError(f"TF_CONFIG: not a valid cluster spec ({type(e).__name__}: {e}); expected "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                          '"index": 0}}') from None
    return spec


def _cluster_size(spec: dict[str, Any] | None) -> int:
    if not spec:
        return 1
    return sum(len(v) for k, v in spec["cluster"].items() if k in ("chief", "worker"))


def _worker_index(spec: dict[str, Any]) -> int:
    """0 for the chief (the task that writes the run dir), 1.. for the other workers."""
    task = spec["task"]
    has_chief = bool(spec["cluster"].get("chief"))
    if task["type"] == "chief":
        return 0
    if task["type"] != "worker":
        raise OptionError(f"TF_CONFIG: task type {task['type']!r} is not supported by "
                          "MultiWorkerMirroredStrategy (use chief/worker)")
    return int(task["index"]) + (1 if has_chief else 0)


def resolve_kind(kind: str, spec: dict[str, Any] | None) -> str:
    if kind not in STRATEGIES:
        raise OptionError(f"strategy must be one of {', '.join(STRATEGIES)}, got {kind!r}")
    if kind != "auto":
        return kind
    if _cluster_size(spec) > 1:
        return "multi_worker"
    import tensorflow as tf

    return "mirrored" if tf.config.list_logical_devices("GPU") else "default"


def make_placement(kind: str = "auto") -> Placement:
    """Create the strategy. Call it before any other TensorFlow work: MultiWorkerMirroredStrategy
    must configure the runtime's collective ops at program start."""
    spec = read_tf_config()
    kind = resolve_kind(kind, spec)
    import tensorflow as tf

    if kind == "multi_worker":
        if spec is None:
            raise OptionError("strategy=multi_worker needs TF_CONFIG in the environment "
                              '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                              '"task": {"type": "worker", "index": 0}})')
        index = _worker_index(spec)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:  # TensorFlow already initialised in this process
            raise OptionError(f"strategy=multi_worker: {e}; start a fresh process") from None
        return Placement(strategy, kind, "tf_keras", index, _cluster_size(spec))
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return Placement(tf.distribute.MirroredStrategy([d.name for d in devices]), kind, "keras")
    return Placement(tf.distribute.get_strategy(), kind, "keras")


def on_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))
