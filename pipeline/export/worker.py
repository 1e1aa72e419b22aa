"""The conversion worker: a child process that loads the Keras model and writes every file.

    python -m pipeline.export.worker job.json      (started by pipeline.export.core)

Why a separate process: the TFLite converter is native code, and for some graphs it does not
raise but crashes the process (seen here: int8 conversion of softplus/selu/mish models ends in
SIGSEGV after "error: scale out of expressed type range"). In a child, a crash becomes one
clear error in the parent, which then deletes everything the run wrote. The parent also never
imports TensorFlow: it checks the files through `serving`, as a device would.

Protocol: one JSON object per line on the original stdout (TensorFlow's own prints are sent to
stderr): {"event": "reference"}, {"event": "start", "format": F}, {"event": "done", "format":
F, "file": name, "seconds": s}, {"event": "failed", "format": F, "message": one line} (that
file could not be made; the next one goes on), {"event": "repair", "format": F, "record": {...}}
(the int8 file failed the gate in here: diagnosis and repair, pipeline.export.repair),
{"event": "error", "format": F, "message": one line} (the run stops).
"""
from __future__ import annotations

import json
import os
import pickle
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from models import get_contract, load_model
from models.atomic import write_bytes
from pipeline.export import onnx, repair, standard_metadata, tflite
from pipeline.export.errors import ExportError, first_line
from pipeline.export.formats import FORMATS, quantization_record
from pipeline.export.job import reference_paths
from pipeline.tasks import Task, get_task
from pipeline.workers import die_with_parent
from serving.metadata import build_metadata, tensor_spec

FAMILIES = {"tflite": tflite, "onnx": onnx}   # FormatSpec.family -> its converter module

REFERENCE_BATCH = 64


def _emit(stream: TextIO, **event: Any) -> None:
    stream.write(json.dumps(event) + "\n")
    stream.flush()


def graph_probs(graph: Path, images: np.ndarray) -> np.ndarray:
    """Probabilities (N, K) of a SavedModel graph (a QAT run's: fake-quant ops are plain TF ops,
    so no tfmot is needed) for uint8 (N, H, W, C)."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(graph)).signatures["serving_default"]
    out = [fn(tf.constant(images[i:i + REFERENCE_BATCH].astype(np.float32)))["probs"].numpy()
           for i in range(0, len(images), REFERENCE_BATCH)]
    return np.concatenate(out).astype(np.float32)


def convert_one(model: Any, task: Task, item: dict[str, Any], job: dict[str, Any],
                calibration: np.ndarray | None, made: tuple[bytes, dict[str, Any]] | None = None) -> Path:
    """Convert (temp files in scratch), describe, embed metadata, write one artifact (atomically)
    into the staging folder. `made`: bytes converted already (int8 repair) and what its
    metadata's quantization block says about them."""
    spec = FORMATS[item["format"]]
    family = FAMILIES[spec.family]
    graph = Path(job["qat_graph"]) if job.get("qat_graph") and spec.runs == ("qat",) else None
    data = made[0] if made else family.convert(model, spec, item["options"], calibration=calibration,
                                               workdir=Path(job["scratch"]), graph=graph, task=task)
    inp, _ = family.describe_io(data)
    quantization = quantization_record(spec, job.get("calibration_info"))
    if made:
        quantization.update(made[1])
    if graph is not None:
        quantization["ranges"] = "learned by quantization-aware training (the QAT graph)"
    if job["source"].get("compression"):
        quantization["compression"] = job["source"]["compression"]
    contract = get_contract(model)
    try:
        out, blocks = task.output_metadata(family.describe_outputs(data), spec.name, contract)
    except ValueError as e:
        raise ExportError(str(e)) from None
    meta = build_metadata(
        format=spec.name, contract=contract,
        input=tensor_spec(**inp), output=tensor_spec(**{k: v for k, v in out.items() if k != "key"}),
        quantization=quantization, source=job["source"])
    meta.update(blocks)   # e.g. a detector's four outputs by name and what the file bakes in
    standard = None
    if spec.family == "tflite":   # what MediaPipe Tasks and the Task Library read, before the seal
        standard = partial(standard_metadata.write, contract=contract, fmt=spec.name,
                           source=job["source"], task=task)
    return write_bytes(Path(job["staging"]) / item["file"], family.embed(data, meta, standard))


def check_and_repair(model: Any, task: Task, item: dict[str, Any], job: dict[str, Any],
                     calibration: np.ndarray | None, path: Path) -> dict[str, Any] | None:
    """A calibrated int8 file is gated here too; one that fails is diagnosed and, with
    int8.repair=auto, repaired (pipeline.export.repair). Returns the repair record, or None when
    the file passed or is not one of these."""
    spec = FORMATS[item["format"]]
    if not job.get("gate_images") or spec.name not in repair.REPAIRABLE or calibration is None:
        return None
    with open(job["gate_images"], "rb") as f:
        images, gate = pickle.load(f)
    reference = task.unpack_reference(np.load(reference_paths(job)["model"]))

    def judge(file: Path, it: dict[str, Any]) -> dict[str, Any]:
        return task.parity(file, FORMATS[it["format"]], images, reference, gate)

    if judge(path, item)["passed"]:
        return None

    def write(it: dict[str, Any], data: bytes, quantization: dict[str, Any]) -> Path:
        return convert_one(model, task, it, job, calibration, made=(data, quantization))

    return repair.repair(spec, item, job, model, task, calibration, images.calibration_extra, path,
                         judge, write)


def run_job(job: dict[str, Any], events: TextIO) -> int:
    """Convert every item of the job. A file that cannot be made is one "failed" event and the
    next item goes on (job["strict"]: it stops the run, an "error" event)."""
    model = load_model(job["model"])
    task = get_task(get_contract(model).task)
    test = np.load(job["test"])
    paths = reference_paths(job)
    np.save(paths["model"], task.reference(model, test))   # also the model's first call, which
    if "origin" in paths:   # the ONNX export needs; the uncompressed source of a compressed run
        np.save(paths["origin"], task.reference(load_model(job["origin"]), test))
    if "qat" in paths:
        np.save(paths["qat"], graph_probs(Path(job["qat_graph"]), test))
    _emit(events, event="reference")
    calibration = np.load(job["calibration"]) if job.get("calibration") else None
    for item in job["items"]:
        current = item["format"]
        _emit(events, event="start", format=current)
        t0 = time.perf_counter()
        try:
            path = convert_one(model, task, item, job, calibration)
            record = check_and_repair(model, task, item, job, calibration, path)
            if record is not None:
                _emit(events, event="repair", format=current, record=record)
        except ExportError as e:
            message = str(e)
        except Exception as e:  # a bug or an unexpected library failure: keep the traceback in the log
            traceback.print_exc()
            message = f"{current}: {type(e).__name__}: {first_line(e)}"
        else:
            _emit(events, event="done", format=current, file=path.name,
                  seconds=round(time.perf_counter() - t0, 2))
            continue
        if job.get("strict"):
            _emit(events, event="error", format=current, message=message)
            return 3
        _emit(events, event="failed", format=current, message=message)
    return 0


def main(argv: list[str]) -> int:
    # keep the real stdout for events; whatever TensorFlow prints goes to stderr
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    job = json.loads(Path(argv[0]).read_text())
    die_with_parent(job.get("parent"))
    return run_job(job, events)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
