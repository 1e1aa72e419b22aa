"""The detection parity gate: does the exported detector find what the Keras detector finds?

Every file runs on the held-out split THROUGH `serving` (Runner.detect_batch: the runtime's own
preprocessing, the file's own decoding + NMS), and is scored with pycocotools against the
ground truth (pipeline.tasks.detection.evaluate.coco_metrics), beside the Keras detector's
detections on the same images, decoded by the same decoder the files hold and the training
evaluation uses (models.decoder; computed in the export worker), so the gate's Keras mAP is the
test mAP of metrics.json:
  mAP@.5 and mAP@[.5:.95] of both, their drops, and the share of Keras boxes the file
  reproduces (same class, IoU >= 0.9).
A file passes when both drops are <= gate.det_max_drop, or gate.det_max_drop_int8 for the lossy
files (the table's `lossy`: tflite_int8 and tflite_dynamic, whose int8 weights move scores the
way full int8 does; fp16 weights are held to the float bar), and a .tflite when MediaPipe's
ObjectDetector accepts it and finds serving's boxes (same class, IoU >= 0.9; those scoring at least
0.05 above the file's score threshold) on at least
gate.mediapipe of them, both ways (gate.mediapipe_int8 for the lossy files; the manifest's
"mediapipe": pass | fail: why | n/a: why).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.boxes import iou_numpy
from pipeline import mediapipe_check
from pipeline.tasks.detection.evaluate import coco_metrics
from serving.runtime import load

REPRODUCE_IOU = 0.9
MEDIAPIPE_MARGIN = 0.05   # boxes this near the score threshold are not required of MediaPipe


def reproduced(ref: list[tuple], got: list[tuple], iou: float = REPRODUCE_IOU) -> float:
    """Share of the reference boxes (all images) that `got` has with the same class at IoU >= iou."""
    total = hits = 0
    for (rb, _, rc), (gb, _, gc) in zip(ref, got):
        for box, cls in zip(rb, rc):
            total += 1
            same = gc == cls
            hits += bool(same.any() and iou_numpy(box, gb[same]).max() >= iou)
    return hits / total if total else 1.0


def compare(split: Any, ref: list[tuple], got: list[tuple], class_names: Any,
            size: tuple[int, int]) -> dict[str, Any]:
    k = coco_metrics(split.boxes, split.labels, ref, class_names, size)
    f = coco_metrics(split.boxes, split.labels, got, class_names, size)
    return {"samples": len(split), "map50_keras": k["map50"], "map_keras": k["map"],
            "map50": f["map50"], "map": f["map"], "map50_drop": k["map50"] - f["map50"],
            "map_drop": k["map"] - f["map"], "reproduced": reproduced(ref, got),
            "detections": f["num_detections"], "detections_keras": k["num_detections"]}


def gate_knob(spec: Any) -> str:
    """The GateConfig field that bounds this format's mAP drop."""
    return "det_max_drop_int8" if spec.lossy else "det_max_drop"


def judge(spec: Any, numbers: dict[str, Any], gate: Any) -> list[str]:
    knob = gate_knob(spec)
    limit = getattr(gate, knob)
    reasons = []
    for key, what in (("map50", "mAP@.5"), ("map", "mAP@[.5:.95]")):
        if numbers[f"{key}_drop"] > limit + 1e-12:
            reasons.append(f"{what} drop {100 * numbers[f'{key}_drop']:.2f} points > {100 * limit:.2f} "
                           f"(Keras {numbers[f'{key}_keras']:.4f}, file {numbers[key]:.4f}; "
                           f"gate.{knob}=... sets it)")
    return reasons


def check_detector(path: Path, spec: Any, split: Any, ref: list[tuple], gate: Any) -> dict[str, Any]:
    """Run the file through serving on the test split and judge it: the manifest's "parity"."""
    runner = load(path, manifest=None, threads=1)
    got = runner.detect_batch(split.images)
    numbers = compare(split, ref, got, runner.labels, runner.contract.size)
    reasons = judge(spec, numbers, gate)
    if Path(path).suffix == ".tflite":   # what MediaPipe's ObjectDetector makes of the same file
        found, why = mediapipe_parity(Path(path), split.images, got, runner.labels,
                                      gate.min_mediapipe(spec), runner.contract.detection.score_threshold)
        numbers.update(found)
        reasons += why
    return {**numbers, "max_map_drop": getattr(gate, gate_knob(spec)), "reproduce_iou": REPRODUCE_IOU,
            "passed": not reasons, "reasons": reasons}


def mediapipe_parity(path: Path, images: np.ndarray, got: list[tuple], labels: Any, need: float,
                     threshold: float) -> tuple[dict[str, Any], list[str]]:
    """MediaPipe's ObjectDetector on the gate's images beside serving's detections (per image:
    boxes (n, 4) normalized, scores, classes): ({"mediapipe": cell, "mediapipe_reproduced": the
    smaller of the shares of serving's boxes MediaPipe finds and of MediaPipe's serving finds,
    same class at IoU >= 0.9, ...}, gate reasons). The boxes to be found are those scoring at
    least MEDIAPIPE_MARGIN above the file's score threshold: nearer to it, a box comes and goes
    with another runtime's rounding (an int8 SSD barely trained: 0.943 of all boxes shared with
    MediaPipe, 0.941 with serving's own kernels=builtin, 1.000 for both above 0.3)."""
    result = mediapipe_check.run(path, "detection", images)
    share = None
    if "detections" in result:
        index = {str(name): i for i, name in enumerate(labels)}
        theirs = [(np.asarray([d[:4] for d in dets], np.float32).reshape(-1, 4),
                   np.asarray([d[4] for d in dets], np.float32),
                   np.asarray([index.get(str(d[5]), -1) for d in dets], np.int32))
                  for dets in result["detections"]]
        ours = got[:len(theirs)]

        def sure(dets: list[tuple]) -> list[tuple]:
            keep = [s >= threshold + MEDIAPIPE_MARGIN for _, s, _ in dets]
            return [(b[k], s[k], c[k]) for (b, s, c), k in zip(dets, keep)]

        share = min(reproduced(sure(ours), theirs), reproduced(sure(theirs), ours))
    cell, reasons = mediapipe_check.verdict(result, share, need, "boxes")
    return {"mediapipe": cell, "mediapipe_reproduced": share,
            "mediapipe_samples": len(result.get("detections", []))}, reasons
