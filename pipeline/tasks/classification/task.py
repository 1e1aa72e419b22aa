"""The classification task: images with one label each, softmax probabilities out.

Data: digits, shapes or a class-folder (pipeline.data); targets: one-hot; loss: cross-entropy
with label smoothing; metrics: accuracy per split, per-class accuracy and the confusion matrix;
export: every format of the table, each file gated on top-1 agreement and accuracy (parity.py);
report: accuracy beside size and latency.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from models import create_model, get_contract
from models.detector import DETECTORS
from models.options import OptionError
from pipeline.data import load_dataset, make_tf_dataset
from pipeline.plots import plot_confusion
from pipeline.recipes import apply as apply_recipe
from pipeline.tasks.base import Task
from pipeline.tasks.classification import preview
from pipeline.tasks.classification.parity import check_artifact
from serving.images import load_image
from serving.tflite_inspect import describe_io, tensor_types


def evaluate_split(model: Any, ds: Any, num_classes: int) -> dict[str, Any]:
    """loss (plain cross-entropy), accuracy and confusion matrix of a probs model over a dataset."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    nll = 0.0
    for x, y in ds:
        probs = np.asarray(model.predict_on_batch(x), dtype=np.float64)   # (B, K)
        true = np.argmax(np.asarray(y), axis=1)
        nll += float(-np.log(np.clip(probs[np.arange(len(true)), true], 1e-12, None)).sum())
        np.add.at(confusion, (true, np.argmax(probs, axis=1)), 1)
    n = int(confusion.sum())
    return {"loss": nll / max(n, 1), "accuracy": float(np.trace(confusion)) / max(n, 1),
            "confusion": confusion, "n": n}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _pt(v: Any, spec: str) -> str:
    return "-" if v is None else f"{100 * v:{spec}} pt"


ACCURACY_SLACK = 0.01   # a recommended file may be at most 1 point less accurate than Keras


class ClassificationTask(Task):
    name = "classification"
    metric = "accuracy"
    monitor = "val_accuracy"
    formats = ("tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8", "onnx", "onnx_int8",
               "tflite_qat_int8", "tflite_sparse")
    integer_io = True
    int8_repair = True
    plot_metric = ("accuracy", "test accuracy (%)")
    summary_columns: ClassVar = (
        ("size KB", 10, ".1f", lambda r, p: r["size_bytes"] / 1024),
        ("gzip KB", 10, ".1f", lambda r, p: r["size_gzip_bytes"] / 1024),
        ("agree", 8, ".3f", lambda r, p: p["top1_agreement"]), ("acc", 8, ".3f", lambda r, p: p["accuracy"]),
        ("keras", 8, ".3f", lambda r, p: p["accuracy_keras"]),
        ("max|dp|", 10, ".2g", lambda r, p: p["max_abs_diff"]))
    report_columns: ClassVar = (
        ("gzip KB", True, lambda r: _fmt(r.get("gzip_kb"), ".1f")),
        ("p50 ms", True, lambda r: f"{r['p50_ms']:.3f}"),
        ("invoke ms", True, lambda r: f"{r['invoke_ms']:.3f}"),
        ("overhead", True, lambda r: f"{r['overhead_pct']:.1f}%"),
        ("accuracy", True, lambda r: _fmt(r["accuracy"], ".4f")),
        ("change", True, lambda r: _pt(r.get("accuracy_change_vs_source"), "+.1f")),
        ("agreement", True, lambda r: _fmt(r["top1_agreement"], ".4f")),
        ("max abs dp", True, lambda r: _fmt(r["max_abs_diff"], ".2g")))
    report_text = ("Latency through `serving` (decode excluded, {threads} thread(s), batch 1, {runs} "
                   "runs after {warmup} warm-up); accuracy and agreement are the parity gate's, on the "
                   "held-out test split (agreement: with the model the file was made from; change: "
                   "accuracy minus the uncompressed source's).")

    # ------------------------------------------------------------------ training

    def check_model(self, name: str) -> None:
        if name in DETECTORS:
            raise OptionError(f"task=classification with model={name}: a detector trains with "
                              "task=detection")

    def recipe(self, cfg: Any) -> tuple[Any, str | None]:
        return apply_recipe(cfg)

    def load_data(self, data_cfg: Any, shape: tuple[int, int, int]) -> Any:
        return load_dataset(data_cfg, image_size=shape[:2], channels=shape[2])

    def build_model(self, name: str, **kwargs: Any) -> Any:
        return create_model(name, **kwargs)

    def tf_dataset(self, split: Any, *, cfg: Any, contract: Any, training: bool) -> Any:
        if len(split) == 0:
            return None
        return make_tf_dataset(split, image_size=contract.size, channels=contract.channels,
                               num_classes=contract.num_classes, batch_size=cfg.batch_size,
                               training=training, augment=cfg.augment if training else None,
                               seed=cfg.seed)

    def loss_and_metrics(self, cfg: Any, contract: Any, k: Any) -> tuple[Any, list]:
        return k.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing), ["accuracy"]

    def preview_grid(self, data: Any, augment: Any, rows: int, cols: int, seed: int, out: Any) -> str:
        return preview.preview_grid(data, augment, rows, cols, seed, out)

    def evaluate(self, model: Any, data: Any, tf_data: Any) -> tuple[dict, dict]:
        """Accuracy/loss on every split with the final weights; per-class accuracy on test (or val)."""
        out: dict[str, Any] = {}
        confusion = None
        for name in ("train", "val", "test"):
            ds = tf_data(name)
            if ds is None:
                out[f"{name}_accuracy"] = out[f"{name}_loss"] = None
                continue
            result = evaluate_split(model, ds, data.num_classes)
            out[f"{name}_accuracy"], out[f"{name}_loss"] = result["accuracy"], result["loss"]
            if name in ("val", "test"):
                confusion, out["confusion_split"] = result["confusion"], name
        if out["val_accuracy"] is not None:
            out["generalization_gap"] = out["train_accuracy"] - out["val_accuracy"]
        if confusion is not None:
            counts = confusion.sum(axis=1)
            out["per_class_accuracy"] = {name: (float(confusion[i, i] / counts[i]) if counts[i] else None)
                                         for i, name in enumerate(data.class_names)}
            out["confusion_matrix"] = confusion.tolist()
        return out, {}

    def write_plots(self, paths: Any, metrics: dict, shown: dict, class_names: Sequence[str],
                    title: str, contract: Any) -> None:
        if "confusion_matrix" in metrics:
            acc = metrics[f"{metrics['confusion_split']}_accuracy"]
            plot_confusion(np.asarray(metrics["confusion_matrix"]), class_names, paths.confusion,
                           title=f"{title}: {metrics['confusion_split']} set, accuracy {acc:.4f}")

    # ------------------------------------------------------------------ export

    def gate_images(self, data: Any, idx: np.ndarray, contract: Any, which: str
                    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """uint8 (len(idx), H, W, C) at the contract's size; lazy splits decode only these files."""
        split = getattr(data, which)
        if split.images is not None:
            pixels = np.asarray(split.images[idx], dtype=np.uint8)
        else:
            pixels = np.empty((len(idx), *contract.input_shape), np.uint8)
            for j, i in enumerate(idx):
                pixels[j] = load_image(split.paths[i], size=contract.size, channels=contract.channels,
                                       resample=contract.resize)
        return pixels, split.labels[idx].astype(np.int32), None

    def reference(self, model: Any, images: np.ndarray) -> np.ndarray:
        """Keras probabilities (N, K) for uint8 (N, H, W, C): the model takes float 0..255; a
        logits model is softmaxed, as serving does for its files."""

        out = np.concatenate([np.asarray(model.predict_on_batch(images[i:i + 64].astype(np.float32)))
                              for i in range(0, len(images), 64)]).astype(np.float64)
        if get_contract(model).output == "logits":
            out = np.exp(out - out.max(1, keepdims=True))
            out /= out.sum(1, keepdims=True)
        return out.astype(np.float32)

    def check_file(self, family: str, file: Any, spec: Any, options: dict[str, Any]) -> list[str]:
        """A .tflite holds what its name promises: I/O dtypes and integer activations."""
        if family != "tflite":
            return []
        inp, out = describe_io(file)
        want = "float32" if options.get("io", "float") == "float" else options["io"]
        for what, rec in (("input", inp), ("output", out)):
            if rec["dtype"] != want:
                return [f"converted {what} is {rec['dtype']}, expected {want}"]
        if spec.activations == "int8":
            # float tensors may only be the float I/O and its (de)quantize boundary
            counts = tensor_types(file)
            floats, allowed = counts.get("float32", 0), 0 if want != "float32" else 2
            if floats > allowed:
                return [f"{floats} float32 tensors left in a full-integer model ({counts})"]
        return []

    def standard_outputs(self, contract: Any) -> list[dict[str, Any]]:
        """One output: the probabilities, labels along its class axis (MediaPipe's ImageClassifier)."""
        return [{"key": None, "name": "probability", "kind": "probabilities",
                 "description": f"probabilities of the {len(contract.labels)} classes"}]

    def parity(self, path: Any, spec: Any, images: Any, reference: Any, gate: Any) -> dict[str, Any]:
        return check_artifact(path, spec, images.test, images.test_labels, reference, gate)

    # ------------------------------------------------------------------ report

    def report_row(self, art: dict[str, Any], bench: dict[str, Any]) -> dict[str, Any]:
        parity = art.get("parity") or {}
        return {"file": art["file"], "format": art["format"], "task": self.name,
                "size_kb": art["size_bytes"] / 1024,
                "gzip_kb": art["size_gzip_bytes"] / 1024 if art.get("size_gzip_bytes") else None,
                "sparsity": art.get("sparsity"),
                "accuracy_change_vs_source": parity.get("accuracy_change_vs_source"),
                "p50_ms": bench["latency_ms"]["p50"], "p90_ms": bench["latency_ms"]["p90"],
                "invoke_ms": bench["invoke_ms"]["p50"], "overhead_pct": bench["overhead_pct"],
                "input_dtype": bench["input_dtype"], "accuracy": parity.get("accuracy"),
                "accuracy_keras": parity.get("accuracy_keras"),
                "top1_agreement": parity.get("top1_agreement"),
                "max_abs_diff": parity.get("max_abs_diff"), "gate_passed": parity.get("passed")}

    def close_to_source(self, row: dict[str, Any], keras_accuracy: float | None) -> bool:
        """Accuracy within ACCURACY_SLACK of Keras'."""
        return (keras_accuracy is None or row.get("accuracy") is None
                or row["accuracy"] >= keras_accuracy - ACCURACY_SLACK)

    def recommend_why(self, row: dict[str, Any]) -> str:
        return f"within {100 * ACCURACY_SLACK:.0f} point of Keras' accuracy"

    def keras_accuracy(self, rows: list[dict[str, Any]]) -> float | None:
        return next((r["accuracy_keras"] for r in rows if r.get("accuracy_keras") is not None), None)

    def keras_row(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {**row, "accuracy": self.keras_accuracy(rows)}
