"""The task axis: classification and detection as two explicit tasks over one trainer, one
export table and one report (pipeline.tasks.base.Task says what a task provides).

    from pipeline.tasks import get_task
    task = get_task(contract.task)       # or cfg.task for a training config

`train`, `export`, `report` and the main job look the task up here and call it; they never
branch on its name. A new task is one folder here (its Task subclass and what it owns: data
formats, targets, loss, metrics, plots, export wrapper, file checks, parity gate, report
columns), one entry in TASKS, and its serving side (serving.tasks).
"""
from __future__ import annotations

from models.options import OptionError, suggest
from pipeline.tasks.base import Task
from pipeline.tasks.classification.task import ClassificationTask
from pipeline.tasks.detection.task import DetectionTask

TASKS: dict[str, Task] = {t.name: t for t in (ClassificationTask(), DetectionTask())}


def get_task(name: str) -> Task:
    """The task called `name`; OptionError with a did-you-mean for an unknown one."""
    try:
        return TASKS[name]
    except KeyError:
        raise OptionError(f"task {name!r} is not one of {', '.join(TASKS)}{suggest(name, TASKS)}") from None


__all__ = ["TASKS", "Task", "get_task"]
