"""Shared pieces of the training tests: a tiny dataset/model and a CLI runner."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# 3 classes x 24 generated 32x32 images, a half-width LeNet-BN: an epoch takes well under a second
TINY = ["data=shapes", "data.shapes.per_class=24", "data.shapes.classes=3", "data.shapes.size=32",
        "model=lenet_bn", "model.width=0.5", "batch_size=8", "augment=none", "verbose=2"]


def env(**extra: str) -> dict[str, str]:
    e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
         "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    e.pop("TF_CONFIG", None)
    e.update(extra)
    return e


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "train", *args]


def run_cli(*args: str, timeout: float = 240, **env_extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(*args), cwd=ROOT, env=env(**env_extra), capture_output=True,
                          text=True, timeout=timeout)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def digits_source(run: Path, name: str, width: float = 0.25) -> Path:
    """A real, briefly trained run dir: registry model `name` at 32x32x1 on `digits`, 3 epochs,
    saved as the training stage does (model.keras + config.yaml with a data section)."""
    import keras
    from margins import seed

    from models import create_model, save_model
    from pipeline.config import save_config
    from pipeline.data import DataConfig, load_dataset

    keras.utils.set_random_seed(seed())
    ds = load_dataset(DataConfig(source="digits"), image_size=(32, 32), channels=1)
    model = create_model(name, num_classes=10, input_shape=(32, 32, 1), labels=ds.class_names, width=width)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(ds.train.images.astype("float32"), ds.train.labels, epochs=3, batch_size=32, verbose=0)
    save_model(model, run / "model.keras")
    save_config({"data": {"source": "digits"},
                 "model": {"name": name, "input_shape": [32, 32, 1], "options": {"width": width}}},
                run / "config.yaml")
    return run
