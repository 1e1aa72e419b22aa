"""Detection in serving: read a detector file's outputs, decode a .keras detector, draw boxes.

An exported detector file (pipeline.export with the detection task) holds decoding + NMS and
outputs boxes (1, K, 4) normalized x0, y0, x1, y1, scores (1, K), classes (1, K) int32 and
count (1,); its four output tensors are found by the names its metadata records (the "detection"
and "outputs" blocks), never by position (converters reorder them). A .keras detector outputs
the raw (1, A, 4 + C + 1) offsets + logits and is decoded by the one decoder's numpy twin
(models.decoder.detect_numpy, with serving.nms: ONNX Runtime's NonMaxSuppression), so every
format answers alike. `to_pixels` undoes the plain resize to the model input (serving.images
stretches the whole image to H x W, no letterbox): x * original width, y * original height.

`DetectorHead` is what serving.runtime.Runner holds for a detector (serving.tasks picks it from
the contract's task). Drawing (`draw_detections`) is shared by `serving detect save=` and the
demo.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.atomic import write_bytes
from models.contract import DataContract
from models.decoder import OUTPUT_NAMES, detect_numpy
from serving.backends import Backend
from serving.images import RESAMPLE, load_image, open_image
from serving.metadata import ArtifactError
from serving.nms import nms


class DetectorHead:
    """How a Runner reads a detector: the file's four outputs by name, or (.keras) the raw
    outputs through the decoder's numpy twin."""
    task = "detection"

    def __init__(self, where: str, contract: DataContract, metadata: dict[str, Any],
                 backend: Backend) -> None:
        self.backend, self.output = backend, backend.output
        if backend.name == "keras":
            self.settings = contract.detection
            self.anchors = self.settings.anchors()
            self.names = None
            return
        block, named = metadata.get("detection"), metadata.get("outputs")
        if not isinstance(block, dict) or not isinstance(named, dict) or set(named) != set(OUTPUT_NAMES):
            raise ArtifactError(f"{where}: a detector file without detection metadata (needs the "
                                "'detection' and 'outputs' blocks); re-export it with "
                                "`python -m pipeline export`")
        have = {o.name: o for o in (backend.outputs or (backend.output,))}
        self.names = {}
        for role in OUTPUT_NAMES:
            name = str(named[role].get("name"))
            if name not in have or have[name].dtype != named[role].get("dtype"):
                raise ArtifactError(f"{where}: metadata output {role!r} ({name}) is not one of the "
                                    f"model's outputs {sorted(have)}")
            self.names[role] = name

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One preprocessed image (1, H, W, C) -> boxes (n, 4) normalized, scores (n,), classes (n,)."""
        if self.names is None:
            boxes, scores, classes, n = detect_numpy(self.backend.run(x)[0], self.settings, nms,
                                                     self.anchors)
            return boxes[:n], scores[:n], classes[:n]
        out = self.backend.run_all(x)
        # classes and count are float32 whole numbers (MediaPipe reads no int32); in an int8 file
        # they pass through int8 tensors, so 2 may come back as 1.99: round, never truncate
        n = int(np.rint(np.asarray(out[self.names["count"]], np.float64).reshape(-1)[0]))
        return (np.asarray(out[self.names["boxes"]], np.float32)[0, :n],
                np.asarray(out[self.names["scores"]], np.float32)[0, :n],
                np.rint(np.asarray(out[self.names["classes"]], np.float64)).astype(np.int32)[0, :n])


def load_original(source: Any, contract: Any, name: str) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (1, H, W, C) at the contract size and the ORIGINAL (width, height): decoded once
    at full size, then resized (a plain stretch, undone by serving.tasks.detect.to_pixels)."""
    full = load_image(source, size=None, channels=contract.channels, name=name)
    height, width = full.shape[:2]
    h, w = contract.size
    if (height, width) != (h, w):
        img = Image.fromarray(full[..., 0] if full.shape[2] == 1 else full)
        full = np.asarray(img.resize((w, h), RESAMPLE[contract.resize]), np.uint8)
        full = full[..., None] if full.ndim == 2 else full
    return full[None], (width, height)


def to_pixels(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalized x0, y0, x1, y1 (N, 4) -> pixels of the original width x height image."""
    return (boxes * np.asarray([width, height, width, height], np.float32)).astype(np.float32)


@dataclass(frozen=True)
class Detections:
    """One image's detections, boxes in its ORIGINAL pixels (x0, y0, x1, y1)."""
    file: str
    width: int
    height: int
    boxes: np.ndarray                   # float32 (N, 4)
    scores: np.ndarray                  # float32 (N,)
    classes: np.ndarray                 # int32 (N,) into labels
    labels: list[str] = field(default_factory=list)
    latency_ms: float = 0.0             # decode + preprocess + model (+ NMS) + postprocess
    labels_all: tuple[str, ...] = ()    # the model's label names (class id -> name)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "width": self.width, "height": self.height,
                "boxes": self.boxes, "scores": self.scores, "labels": list(self.labels),
                "classes": self.classes, "latency_ms": self.latency_ms}

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "width": self.width, "height": self.height,
                "latency_ms": round(self.latency_ms, 3),
                "detections": [{"label": lab, "class": int(c), "score": round(float(s), 4),
                                "box": [round(float(v), 2) for v in b]}
                               for b, s, c, lab in zip(self.boxes, self.scores, self.classes, self.labels)]}


# colour per class id (tab10), so the same class has the same colour in every image
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


SCORE_THRESHOLD = 0.3   # what `serving detect` and the demo show by default; a file keeps boxes
                        # above its own lower floor (0.05), for mAP and for whoever wants them


def label_text(class_id: int, label_names: Sequence[str]) -> str:
    return label_names[class_id] if 0 <= class_id < len(label_names) else f"class {class_id}"


def draw_detections(image: Image.Image | np.ndarray, det: Mapping[str, np.ndarray],
                    label_names: Sequence[str] = ()) -> Image.Image:
    """A copy of the image (RGB) with each box outlined in its class colour and a
    'label score' tag above it (inside the box when it touches the top edge)."""
    img = Image.fromarray(np.asarray(image)) if isinstance(image, np.ndarray) else image
    img = img.convert("RGB")   # a copy: the caller's image is never drawn on
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    width = max(1, round(min(img.size) / 150))
    # draw the weakest first so the best box ends up on top
    for i in np.argsort(det["scores"], kind="stable"):
        x0, y0, x1, y1 = (float(v) for v in det["boxes"][i])
        color = PALETTE[int(det["labels"][i]) % len(PALETTE)]
        # x1/y1 are exclusive; Pillow's rectangle includes its far corner
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=color, width=width)
        tag = f"{label_text(int(det['labels'][i]), label_names)} {det['scores'][i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        tw, th = right - left, bottom - top + 2
        ty = y0 - th - 1 if y0 - th - 1 >= 0 else y0 + width
        draw.rectangle((x0, ty, x0 + tw + 3, ty + th), fill=color)
        draw.text((x0 + 2, ty - top + 1), tag, fill=(255, 255, 255), font=font)
    return img


def output_stems(files: list[Any], out_dir: Any) -> list[str]:
    """One output name per input for save_annotated: its stem, numbered (photo, photo-2, ...)
    where two inputs share one (a/photo.jpg, b/photo.jpg). ValueError when an output
    (<stem>.png, <stem>.json in out_dir) would be one of the inputs: never write over an input."""
    out = Path(out_dir)
    inputs = {os.path.realpath(f) for f in files}
    taken: set[str] = set()
    stems = []
    for f in files:
        stem, n = Path(f).stem, 1
        while stem in taken:
            n += 1
            stem = f"{Path(f).stem}-{n}"
        taken.add(stem)
        stems.append(stem)
        for suffix in (".png", ".json"):
            if os.path.realpath(out / f"{stem}{suffix}") in inputs:
                raise ValueError(f"save={out_dir}: would write over the input {out / (stem + suffix)}; "
                                 "save into another folder")
    return stems


def save_annotated(source: Any, result: Detections, out_dir: Any, stem: str | None = None
                   ) -> tuple[Any, Any]:
    """Write <stem>.png (the original image with its boxes drawn) and <stem>.json
    (result.to_json()) into out_dir, atomically; returns both paths. stem: the name from
    output_stems (default: the source's stem)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img = open_image(source).convert("RGB")
    drawn = draw_detections(img, {"boxes": result.boxes, "scores": result.scores,
                                  "labels": result.classes}, result.labels_all)
    buf = io.BytesIO()
    drawn.save(buf, format="PNG")
    stem = stem or Path(result.file).stem
    png = write_bytes(out / f"{stem}.png", buf.getvalue())
    js = write_bytes(out / f"{stem}.json", json.dumps(result.to_json(), indent=2).encode())
    return png, js
