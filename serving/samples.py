"""The built-in sample images: the tiny PNGs in <repo>/samples/ (made by
samples/make_samples.py from the `shapes`, `digits` and `shapes_det` data sources).

Classifiers are offered the one-object samples whose file name is one of their labels
('circle.png', 'digit_3.png'); detectors the scenes listed in samples/scenes.json (with their
ground-truth boxes) whose objects are all of the detector's classes."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.boxes import iou_numpy
from serving.images import is_image_file

SCENES_JSON = "scenes.json"


def sample_label(name: str) -> str:
    """The class a sample shows, from its file name: 'circle.png' -> 'circle', 'digit_3.png' -> '3'."""
    return Path(name).stem.removeprefix("digit_")


def read_scenes(folder: str | Path) -> dict[str, dict[str, Any]]:
    """scenes.json of a samples folder: scene file -> {"size": [w, h], "objects": [{"label",
    "box": [x0, y0, x1, y1] pixels}]}; {} when there is none or it cannot be read."""
    path = Path(folder) / SCENES_JSON
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def scene_labels(scene: dict[str, Any]) -> set[str]:
    return {str(o.get("label")) for o in scene.get("objects", []) if isinstance(o, dict)}


def samples_for(samples: dict[str, Path], labels: Sequence[str], task: str = "classification",
                scenes: dict[str, dict[str, Any]] | None = None) -> dict[str, Path]:
    """The samples a model of `task` with these labels can answer, in order: for a detector the
    scenes whose objects are all among its labels, for a classifier the one-object samples
    showing one of its labels (never a scene)."""
    known, scenes = set(labels), scenes or {}
    if task == "detection":
        return {n: p for n, p in samples.items() if n in scenes and scene_labels(scenes[n]) <= known}
    return {n: p for n, p in samples.items() if n not in scenes and sample_label(n) in known}


def list_samples(folder: str | Path) -> dict[str, Path]:
    """name -> path of every image in `folder`, sorted by name ({} when there is none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and is_image_file(p)}


def found(wanted: Sequence[Mapping[str, Any]], got: Sequence[Mapping[str, Any]], iou: float = 0.5) -> int:
    """How many of `wanted`'s rows ({label, box}) have a row in `got` of the same label with
    IoU >= iou: ground-truth objects a detector found, or A's boxes that B also gave."""
    hits = 0
    for w in wanted:
        same = np.asarray([g["box"] for g in got if g["label"] == w["label"]], np.float32).reshape(-1, 4)
        hits += bool(len(same) and iou_numpy(np.asarray(w["box"], np.float32), same).max() >= iou)
    return hits
