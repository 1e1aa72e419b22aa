"""The serving runtime: `serving.load(path)` -> a Runner that predicts and classifies.

    runner = serving.load("export/model_int8.tflite")     # checks manifest.json beside it
    probs = runner.predict(images)                        # uint8 (N, H, W, C) -> (N, K)
    results = runner.classify(["cat.jpg"], topk=3)        # decode + predict + labels

Loading reads the artifact metadata (serving.metadata), verifies the file against the
manifest (serving.manifest), opens the backend chosen by the file suffix
(serving.backends.BACKENDS) and checks that the file's real tensors agree with what its
metadata claims, so a mislabelled file fails at load time instead of answering wrongly.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from models.contract import DataContract
from serving import preprocess
from serving.backends import Backend, backend_for, merge_spec, open_backend
from serving.manifest import find_entry, read_manifest, verify_file
from serving.metadata import ArtifactError, check_size, read_metadata
from serving.tasks import classify as classification
from serving.tasks import open_head
from serving.tasks.classify import ClassifierHead, Prediction
from serving.tasks.detect import Detections, DetectorHead, load_original, to_pixels
from serving.tta import average as tta_average
from serving.tta import check_mode
from serving.tta import views as tta_views


class Runner:
    """A loaded model file with its contract, metadata and backend."""

    def __init__(self, path: Path, metadata: dict[str, Any], backend: Backend,
                 manifest: dict[str, Any] | None = None) -> None:
        self.path = path
        self.metadata = metadata
        self.contract = DataContract.from_dict(metadata["contract"])
        self.format: str = metadata["format"]
        self.backend = backend
        self.manifest = manifest
        where = str(path)
        self.input = merge_spec(backend.input, metadata["input"], "input", where)
        if tuple(self.input.shape[1:]) != tuple(self.contract.input_shape):
            raise ArtifactError(f"{where}: model input {list(self.input.shape)} does not match the "
                                f"contract's input_shape {list(self.contract.input_shape)} (NHWC)")
        self.head = open_head(where, self.contract, metadata, backend)   # per task: serving.tasks
        self.output = self.head.output

    def __repr__(self) -> str:
        return (f"Runner({str(self.path)!r}, format={self.format!r}, backend={self.backend.name!r}, "
                f"input={self.input.dtype}{list(self.input.shape)})")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.contract.labels

    @property
    def task(self) -> str:
        return self.head.task

    def _head(self, kind: type, call: str) -> Any:
        if not isinstance(self.head, kind):
            raise ArtifactError(f"{self.path}: a {self.contract.task} model; {call}() needs a "
                                f"{kind.task} model")
        return self.head

    def run_batch(self, images: np.ndarray) -> Any:
        """The task's answer for uint8 pixels (N, H, W, C) at the contract size: probabilities
        (N, K) for a classifier, per image (boxes, scores, classes) for a detector."""
        return self.predict(images) if isinstance(self.head, ClassifierHead) else self.detect_batch(images)

    def predict(self, images: np.ndarray, tta: str = "none") -> np.ndarray:
        """Pixels uint8 (N, H, W, C) (or one (H, W, C)) at the contract size -> float32
        probabilities (N, K). tta="flip"/"flip_crop" averages over 2/10 views (serving.tta)."""
        head = self._head(ClassifierHead, "predict")
        if tta != "none":
            batch = preprocess.check_batch(images, self.contract)
            return tta_average([self.predict(v) for v in tta_views(batch, tta)])
        x = preprocess.to_input(images, self.contract, self.input)
        return head.probabilities(self.backend.run(x))

    def classify(self, sources: Iterable[preprocess.Source], topk: int = 5,
                 tta: str = "none") -> list[Prediction]:
        """Decode each image (path, bytes or file object), predict one at a time and label it.
        A bad image raises serving.images.ImageError naming it."""
        check_mode(tta)
        results = []
        for i, source in enumerate(sources):
            t0 = time.perf_counter()
            probs = self.predict(preprocess.load_images([source], self.contract), tta=tta)[0]
            best = classification.topk(probs, self.labels, topk)
            name = str(source) if isinstance(source, (str, os.PathLike)) else (
                getattr(source, "name", None) or f"<image {i}>")
            results.append(Prediction(file=name, label=best[0][0], score=best[0][1], topk=best,
                                      latency_ms=(time.perf_counter() - t0) * 1e3))
        return results


    def detect_batch(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Pixels uint8 (N, H, W, C) at the contract size -> per image normalized x0, y0, x1, y1
        boxes (n, 4), scores (n,), classes (n,), one image per call (the parity gate's path)."""
        head = self._head(DetectorHead, "detect")
        batch = preprocess.check_batch(images, self.contract)
        return [head.run(preprocess.to_input(img[None], self.contract, self.input)) for img in batch]

    def detect(self, sources: Iterable[preprocess.Source], score: float | None = None
               ) -> list[Detections]:
        """Decode each image (path, bytes or file object), detect, and return its boxes in the
        ORIGINAL image's pixels (x0, y0, x1, y1), labels, scores and latency. `score` drops
        boxes below it (the file's own score threshold already applied)."""
        head = self._head(DetectorHead, "detect")
        results = []
        for i, source in enumerate(sources):
            t0 = time.perf_counter()
            name = str(source) if isinstance(source, (str, os.PathLike)) else (
                getattr(source, "name", None) or f"<image {i}>")
            pixels, (width, height) = load_original(source, self.contract, name)
            boxes, scores, classes = head.run(preprocess.to_input(pixels, self.contract, self.input))
            keep = scores >= score if score is not None else slice(None)
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
            results.append(Detections(
                file=name, width=width, height=height, boxes=to_pixels(boxes, width, height),
                scores=scores, classes=classes, labels=[self.labels[c] for c in classes],
                latency_ms=(time.perf_counter() - t0) * 1e3, labels_all=tuple(self.labels)))
        return results


def _check_manifest(path: Path, manifest: Any) -> dict[str, Any] | None:
    """manifest="auto": manifest.json beside the file, if any, and only if it lists the file;
    a path: that manifest, which must list the file; None/False: no check."""
    if manifest is None or manifest is False:
        return None
    auto = isinstance(manifest, str) and manifest == "auto"
    found = read_manifest(path.parent if auto else Path(manifest))
    if found is None:
        if auto:
            return None
        raise ArtifactError(f"{manifest}: no such manifest")
    if auto and find_entry(found, path.name) is None:
        return None
    verify_file(path, found)
    return found


def load(path: str | os.PathLike, *, manifest: str | os.PathLike | None = "auto",
         threads: int | None = None, kernels: str | None = None) -> Runner:
    """Open a .tflite, .onnx or .keras file for serving (see module docstring).

    threads: intra-op threads for TFLite/ONNX (default 1; Keras ignores it).
    kernels: for a .tflite file, LiteRT's "xnnpack" (default), "builtin" or "reference" kernels."""
    path = Path(path)
    backend_for(path)   # an unknown suffix fails first, listing the supported ones
    if path.suffix.lower() != ".keras":   # .tflite/.onnx: bounded before anything reads them
        check_size(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")
    checked = _check_manifest(path, manifest)
    metadata = read_metadata(path)
    backend = open_backend(path, threads=threads, kernels=kernels)
    return Runner(path, metadata, backend, checked)
