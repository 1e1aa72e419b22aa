"""int8 repair: a calibrated int8 file that failed its gate is diagnosed, then made again.

Runs in the export worker (it needs TensorFlow), right after the file was converted and found
failing by the same parity gate the parent applies (the parent judges every file again).

1. Diagnosis: every quantized layer's own error, ranked worst first (tflite_debug.py: TFLite's
   quantization debugger; onnx_debug.py: ONNX Runtime's qdq_loss_debug), on up to
   DEBUG_SAMPLES calibration images.
2. Cheap fixes, each a full-int8 file under the same name (it still is what the name says):
   more calibration images (int8.extra_calib x calib_samples more training images), then the
   calibration images plus a copy under light training augmentation (augmented_calibration),
   then per-tensor instead of per-channel weights.
3. Mixed precision: the worst layers kept float (model_int8_mixed.*), adding layers in rank
   order (1, 2, 3, 5, 8, ...) until the file passes or int8.budget of the layers is spent.
The record (diagnosis, every attempt with its numbers, what passed) goes to the manifest.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.atomic import write_bytes
from pipeline.export import onnx, onnx_debug, tflite, tflite_debug
from pipeline.export.errors import ExportError
from pipeline.export.formats import FormatSpec

REPAIRABLE = ("tflite_int8", "onnx_int8")   # calibrated from the float model (not the QAT graph)
DEBUG_SAMPLES = 64     # images the per-layer errors are measured on
TOP = 20               # layers kept in the manifest's ranking


def mixed_name(spec: FormatSpec) -> str:
    return f"model_int8_mixed{spec.suffix}"


def layer_steps(budget: int) -> list[int]:
    """How many layers to keep float on each try: 1, 2, 3, 5, 8, 12, ... up to `budget`."""
    steps, k = [], 1
    while k < budget:
        steps.append(k)
        k = max(k + 1, math.ceil(k * 1.5))
    return steps + [budget] if budget >= 1 else steps


def augmented_calibration(images: np.ndarray, seed: int = 0, batch: int = 64) -> np.ndarray:
    """uint8 (N, H, W, C) -> (2N, H, W, C): the images, then each once more under the `light`
    training augmentation without flips (shift and zoom 10%, brightness and contrast 20%:
    pipeline.augment, seeded), so the int8 ranges also cover what the model was trained to see."""
    import tensorflow as tf

    from pipeline.augment import AugmentConfig, augment_batch

    cfg = AugmentConfig("light", hflip=False)
    out = [np.asarray(images, np.uint8)]
    for i in range(0, len(images), batch):
        x = tf.constant(images[i:i + batch], tf.float32)
        y, _ = augment_batch(x, tf.zeros((len(x), 1)), cfg, tf.constant([seed, i], tf.int64))
        out.append(np.round(y.numpy()).astype(np.uint8))
    return np.concatenate(out)


def _attempt(fix: str, file: str, parity: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"fix": fix, "file": file, "passed": bool(parity["passed"]),
            "top1_agreement": parity.get("top1_agreement"), "accuracy": parity.get("accuracy"),
            "reasons": parity["reasons"], **extra}


def repair(spec: FormatSpec, item: dict[str, Any], job: dict[str, Any], model: Any, task: Any,
           calibration: np.ndarray, extra: np.ndarray | None, plain: Path,
           judge: Callable[[Path, dict[str, Any]], dict[str, Any]],
           write: Callable[[dict[str, Any], bytes, dict[str, Any]], Path]) -> dict[str, Any]:
    """Diagnose the failing file `plain` and, with int8.repair=auto, try the fixes; `judge(path,
    item)` is the parity gate, `write(item, data, quantization)` writes a file with its metadata
    into the staging folder. Returns the manifest's record; the staging folder then holds the
    plain file (fixed when a cheap fix passed) and model_int8_mixed.* only if it passed."""
    settings = job["int8"]
    workdir = Path(job["scratch"])
    sample = calibration[:DEBUG_SAMPLES]
    debug = _debugger(spec, item, model, task, calibration, sample, workdir)
    layers = debug.layers()
    kind = tflite_debug if spec.family == "tflite" else onnx_debug
    metric, help_text = kind.METRIC, kind.METRIC_HELP
    record: dict[str, Any] = {
        "diagnosis": {"metric": metric, "metric_help": help_text, "images": int(len(sample)),
                      "layers_total": len(layers),
                      "layers": [{k: v for k, v in r.items() if k != "tensor"} for r in layers[:TOP]]},
        "attempts": [], "result": None}
    if settings["repair"] != "auto":
        return record
    original = plain.read_bytes()

    cheap = []
    if extra is not None and len(extra) and settings["extra_calib"]:
        more = np.concatenate([calibration, extra])
        cheap.append((f"more calibration: {len(more)} images instead of {len(calibration)}",
                      lambda: _full_int8(spec, item, model, task, more, workdir, per_tensor=False)))
    cheap.append((f"augmented calibration: {2 * len(calibration)} images (each also shifted, zoomed, "
                  "brightened)",   # the augmented set is made only when this fix is tried
                  lambda: _full_int8(spec, item, model, task, augmented_calibration(calibration), workdir,
                                     per_tensor=False)))
    cheap.append(("per-tensor weights (instead of per-channel)",
                  lambda: _full_int8(spec, item, model, task, calibration, workdir, per_tensor=True)))
    for fix, make in cheap:
        try:
            data = make()
        except ExportError as e:
            record["attempts"].append({"fix": fix, "file": item["file"], "passed": False,
                                       "reasons": [str(e)]})
            continue
        path = write(item, data, {"repair": fix})
        parity = judge(path, item)
        record["attempts"].append(_attempt(fix, item["file"], parity))
        if parity["passed"]:
            record["result"] = {"file": item["file"], "fix": fix, "float_layers": []}
            return record
    write_bytes(plain, original)   # the cheap fixes failed: the parent reports the file as made

    mixed = {**item, "file": mixed_name(spec), "options": {**item["options"], "io": "float"}}
    budget = max(1, int(settings["budget"] * len(layers)))
    path = None
    for k in layer_steps(min(budget, len(layers))):
        chosen = layers[:k]
        names = [r["layer"] for r in chosen]
        fix = f"int8 with {k} float layer{'s' if k > 1 else ''}: {', '.join(names)}"
        try:
            data = _checked_mixed(spec, debug.convert([r["node"] for r in chosen]), task)
        except ExportError as e:
            record["attempts"].append({"fix": fix, "file": mixed["file"], "passed": False,
                                       "reasons": [str(e)]})
            continue
        path = write(mixed, data, {"activations": "int8 except the float layers", "float_layers": names,
                                   "repair": fix, "layers_int8": len(layers) - k,
                                   "layers_total": len(layers)})
        parity = judge(path, mixed)
        record["attempts"].append(_attempt(fix, mixed["file"], parity, float_layers=names))
        if parity["passed"]:
            record["result"] = {"file": mixed["file"], "fix": fix, "float_layers": names,
                                "layers_total": len(layers)}
            return record
    if path is not None:
        path.unlink(missing_ok=True)
    return record


def _debugger(spec: FormatSpec, item: dict[str, Any], model: Any, task: Any, calibration: np.ndarray,
              sample: np.ndarray, workdir: Path) -> Any:
    if spec.family == "tflite":
        graph, signature = task.export_graph(model)
        return tflite_debug.TFLiteInt8Debug(tflite.saved_model(graph, workdir, signature), calibration,
                                            sample)
    return onnx_debug.OnnxInt8Debug(workdir / f"float_opset{int(item['options']['opset'])}.onnx", calibration,
                         sample, workdir)


def _full_int8(spec: FormatSpec, item: dict[str, Any], model: Any, task: Any, calibration: np.ndarray,
               workdir: Path, per_tensor: bool) -> bytes:
    """The format's own full-int8 conversion with other calibration images or per-tensor weights."""
    if spec.family == "tflite":
        options = {**item["options"], **({"weights": "per_tensor"} if per_tensor else {})}
        return tflite.convert(model, spec, options, calibration=calibration, workdir=workdir, task=task)
    float_path = workdir / f"float_opset{int(item['options']['opset'])}.onnx"
    return onnx.quantize_int8(float_path, spec, calibration, workdir, per_channel=not per_tensor)


def _checked_mixed(spec: FormatSpec, data: bytes, task: Any) -> bytes:
    """A mixed file still holds int8 weights, float I/O, and passes the family's checks."""
    from dataclasses import replace

    if spec.family == "onnx":
        return onnx.check_int8(data, spec)
    tflite.check_weights(data, spec)
    problems = task.check_file("tflite", data, replace(spec, activations="mixed"), {"io": "float"})
    if problems:
        raise ExportError(f"{spec.name}: {problems[0]}")
    return data
