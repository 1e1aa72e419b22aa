"""The parity gate: does the exported file answer like the Keras model it came from?

Each artifact runs on held-out images (the test split) THROUGH `serving.load(...).predict`,
i.e. with the runtime's own preprocessing and (de)quantization, exactly as a device would run
it, and is compared with the Keras model's probabilities on the same uint8 pixels:
  max/mean |p_artifact - p_keras|, top-1 agreement, accuracy of both, accuracy drop.
A format passes when top-1 agreement >= gate.<format> and, for lossy (quantized) formats,
the accuracy drop <= gate.max_accuracy_drop (and |dp| <= gate.max_abs_diff when set), and a
.tflite when MediaPipe's ImageClassifier accepts it and gives serving's top-1 on at least
gate.mediapipe of the images (gate.mediapipe_int8 for the lossy files; the manifest's
"mediapipe": pass | fail: why | n/a: why).
With gate.tta=flip|flip_crop each file's accuracy under test-time augmentation is measured too
(accuracy_tta, reported beside the gate's numbers; the gate itself compares plain predictions).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline import mediapipe_check
from serving.runtime import load


def compare(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """reference, probs: float (N, K); labels: int (N,) -> the parity numbers."""
    if reference.shape != probs.shape:
        raise ValueError(f"artifact output {probs.shape} does not match Keras {reference.shape}")
    diff = np.abs(probs.astype(np.float64) - reference.astype(np.float64))
    ref_top, top = reference.argmax(1), probs.argmax(1)
    acc_ref = float(np.mean(ref_top == labels))
    acc = float(np.mean(top == labels))
    return {"samples": int(len(labels)),
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "top1_agreement": float(np.mean(ref_top == top)),
            "accuracy_keras": acc_ref, "accuracy": acc, "accuracy_drop": acc_ref - acc}


def judge(spec: Any, numbers: dict[str, Any], gate: Any) -> list[str]:
    """One line per broken threshold (empty list = passed)."""
    reasons = []
    need = gate.min_agreement(spec.name)
    if numbers["top1_agreement"] < need:
        reasons.append(f"top-1 agreement {numbers['top1_agreement']:.4f} < {need:.4f} "
                       f"(accuracy: Keras {numbers['accuracy_keras']:.4f}, file {numbers['accuracy']:.4f}; "
                       f"gate.{spec.name}=... sets the threshold)")
    if spec.lossy and numbers["accuracy_drop"] > gate.max_accuracy_drop + 1e-12:
        reasons.append(f"accuracy drop {100 * numbers['accuracy_drop']:.2f} points > "
                       f"{100 * gate.max_accuracy_drop:.2f} (Keras {numbers['accuracy_keras']:.4f}, "
                       f"file {numbers['accuracy']:.4f})")
    if gate.max_abs_diff is not None and numbers["max_abs_diff"] > gate.max_abs_diff:
        reasons.append(f"max |dp| {numbers['max_abs_diff']:.3g} > {gate.max_abs_diff:.3g}")
    return reasons


def check_artifact(path: Path, spec: Any, images: np.ndarray, labels: np.ndarray,
                   reference: np.ndarray, gate: Any) -> dict[str, Any]:
    """Run the file through serving on `images` (uint8 (N, H, W, C)) and judge it; returns the
    manifest's "parity" record (numbers, thresholds, passed, reasons)."""
    runner = load(path, manifest=None, threads=1)
    probs = runner.predict(images)
    numbers = compare(reference, probs, labels)
    reasons = judge(spec, numbers, gate)
    if Path(path).suffix == ".tflite":   # what MediaPipe's ImageClassifier makes of the same file
        found, why = mediapipe_parity(Path(path), images, probs, gate.min_mediapipe(spec))
        numbers.update(found)
        reasons += why
    if gate.tta != "none":   # reported, not gated: what averaging over views buys on this file
        numbers["tta"] = gate.tta
        numbers["accuracy_tta"] = float(np.mean(runner.predict(images, tta=gate.tta).argmax(1) == labels))
    return {**numbers,
            "min_top1_agreement": gate.min_agreement(spec.name),
            "max_accuracy_drop": gate.max_accuracy_drop if spec.lossy else None,
            "max_abs_diff_allowed": gate.max_abs_diff,
            "passed": not reasons, "reasons": reasons}


def mediapipe_parity(path: Path, images: np.ndarray, probs: np.ndarray, need: float
                     ) -> tuple[dict[str, Any], list[str]]:
    """MediaPipe's ImageClassifier on the gate's images beside serving's probabilities (N, K):
    ({"mediapipe": cell, "mediapipe_agreement": share of equal top-1, ...}, gate reasons)."""
    result = mediapipe_check.run(path, "classification", images)
    share = None
    if "top1" in result:
        top1 = np.asarray(result["top1"], np.int64)
        share = float(np.mean(top1 == probs[:len(top1)].argmax(1)))
    cell, reasons = mediapipe_check.verdict(result, share, need, "top-1 answers")
    return {"mediapipe": cell, "mediapipe_agreement": share,
            "mediapipe_samples": len(result.get("top1", []))}, reasons
