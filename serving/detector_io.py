"""How a Runner reads a detector: which outputs are which, and the original image size.

A detector file (.tflite/.onnx from pipeline.export) must carry the "detection" and "outputs"
metadata blocks (serving.detection.metadata_block): its four output tensors are found by the
names recorded there, never by position (converters reorder them). A .keras detector outputs
the raw offsets + logits and is decoded by serving.detection.decode_nms with the contract's
anchors and NMS settings, the same algorithm the files hold.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from serving.detection import OUTPUT_NAMES, anchors, decode_nms
from serving.images import RESAMPLE, load_image
from serving.metadata import ArtifactError


class FileDetector:
    """Decoding + NMS inside the file: read its four outputs by name."""

    def __init__(self, backend: Any, names: dict[str, str]) -> None:
        self.backend, self.names = backend, names

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.backend.run_all(x)
        n = int(np.asarray(out[self.names["count"]]).reshape(-1)[0])
        return (np.asarray(out[self.names["boxes"]], np.float32)[0, :n],
                np.asarray(out[self.names["scores"]], np.float32)[0, :n],
                np.asarray(out[self.names["classes"]]).astype(np.int32)[0, :n])


class RawDetector:
    """A .keras detector: raw (1, A, 4 + C + 1) out, decoded + NMS'd in numpy."""

    def __init__(self, backend: Any, contract: Any) -> None:
        self.backend = backend
        self.anchors = anchors(contract)
        self.nms = dict(contract.extra["nms"])
        self.variances = tuple(contract.extra["encoding"]["variances"])

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raw = self.backend.run(x)[0]
        boxes, scores, classes, n = decode_nms(raw, self.anchors, self.nms, self.variances)
        return boxes[:n], scores[:n], classes[:n]


def detector_io(where: str, contract: Any, metadata: dict[str, Any], backend: Any
                ) -> FileDetector | RawDetector | None:
    """The detector reader for this file, None for a classifier; ArtifactError when a file and
    its metadata disagree about being a detector."""
    outputs = backend.outputs or (backend.output,)
    if contract.task != "detection":
        if len(outputs) == 4:
            raise ArtifactError(f"{where}: the model has four outputs (a detector?) but its metadata "
                                f"is a {contract.task} model's; re-export it with "
                                "`python -m pipeline export`")
        return None
    if backend.name == "keras":
        return RawDetector(backend, contract)
    block, named = metadata.get("detection"), metadata.get("outputs")
    if not isinstance(block, dict) or not isinstance(named, dict) or set(named) != set(OUTPUT_NAMES):
        raise ArtifactError(f"{where}: a detector file without detection metadata (needs the "
                            "'detection' and 'outputs' blocks); re-export it with "
                            "`python -m pipeline export`")
    have = {o.name: o for o in outputs}
    names = {}
    for role in OUTPUT_NAMES:
        name = str(named[role].get("name"))
        if name not in have or have[name].dtype != named[role].get("dtype"):
            raise ArtifactError(f"{where}: metadata output {role!r} ({name}) is not one of the "
                                f"model's outputs {sorted(have)}")
        names[role] = name
    return FileDetector(backend, names)


def load_original(source: Any, contract: Any, name: str) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (1, H, W, C) at the contract size and the ORIGINAL (width, height): decoded once
    at full size, then resized (a plain stretch, undone by serving.detection.to_pixels)."""
    full = load_image(source, size=None, channels=contract.channels, name=name)
    height, width = full.shape[:2]
    h, w = contract.size
    if (height, width) != (h, w):
        img = Image.fromarray(full[..., 0] if full.shape[2] == 1 else full)
        full = np.asarray(img.resize((w, h), RESAMPLE[contract.resize]), np.uint8)
        full = full[..., None] if full.ndim == 2 else full
    return full[None], (width, height)
