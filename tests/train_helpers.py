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
