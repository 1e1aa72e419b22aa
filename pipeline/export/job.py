"""The job the export parent (core.py) hands its worker process (worker.py): a JSON file with the
model, the staging and scratch folders, the items to convert and where each input lies; and
where the worker writes its references for the parity gate."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def reference_paths(job: dict[str, Any]) -> dict[str, str]:
    """Where the worker writes the references: the Keras model's answers (Task.reference), the
    QAT graph's probabilities (QAT runs) and the uncompressed source model's (compressed runs)."""
    base = Path(job["reference"])
    paths = {"model": str(base)}
    for kind in ("qat", "origin"):
        key = "qat_graph" if kind == "qat" else kind
        if job.get(key):
            paths[kind] = str(base.with_name(f"{base.stem}_{kind}.npy"))
    return paths
