"""The task axis of serving: one head per task, picked from the model's contract.

    head = open_head(where, contract, metadata, backend)    # ClassifierHead | DetectorHead

A head checks the file's outputs against its metadata at load time and turns the backend's
outputs into the task's answer; serving.runtime.Runner holds one and calls it. A new task is a
module here and one entry in HEADS (and its pipeline side: pipeline.tasks).
"""
from __future__ import annotations

from typing import Any

from models.contract import DataContract
from serving.backends import Backend
from serving.metadata import ArtifactError
from serving.tasks.classify import ClassifierHead
from serving.tasks.detect import DetectorHead

HEADS: dict[str, type] = {"classification": ClassifierHead, "detection": DetectorHead}


def open_head(where: str, contract: DataContract, metadata: dict[str, Any], backend: Backend) -> Any:
    """The head of the contract's task for this file; ArtifactError for a task serving lacks."""
    try:
        head = HEADS[contract.task]
    except KeyError:
        raise ArtifactError(f"{where}: a {contract.task!r} model; serving knows "
                            f"{', '.join(HEADS)}") from None
    return head(where, contract, metadata, backend)
