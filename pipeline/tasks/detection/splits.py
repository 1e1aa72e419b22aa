"""Splits of images with boxes: what a detection source reads (Record), decodes (DetSplit) and
returns (DetDataset); boxes are normalised corners x0, y0, x1, y1 in 0..1 (keras' "rel_xyxy")."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass
class Record:
    """One annotated image as a reader found it: boxes in pixels of the original image unless
    `normalized` (YOLO), with for each box where it came from (file:line, file: object n)."""
    path: str
    boxes: np.ndarray                 # float32 (K, 4) x0, y0, x1, y1
    labels: np.ndarray                # int32 (K,)
    where: list[str] = field(default_factory=list)
    normalized: bool = False


@dataclass
class DetSplit:
    images: np.ndarray                # uint8 (N, H, W, C) at the model input size
    boxes: list[np.ndarray]           # per image float32 (K_i, 4) normalised corners
    labels: list[np.ndarray]          # per image int32 (K_i,) class ids
    names: list[str] = field(default_factory=list)   # file names (or generated ids)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> DetSplit:
        return DetSplit(self.images[idx], [self.boxes[i] for i in idx], [self.labels[i] for i in idx],
                        [self.names[i] for i in idx] if self.names else [])

    def padded(self, max_objects: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """float32 (N, M, 4) boxes and int32 (N, M) labels, padding rows all 0 / -1."""
        m = max_objects or max([len(b) for b in self.boxes] + [1])
        boxes = np.zeros((len(self), m, 4), np.float32)
        labels = np.full((len(self), m), -1, np.int32)
        for i, (b, lab) in enumerate(zip(self.boxes, self.labels)):
            boxes[i, :min(len(b), m)], labels[i, :min(len(b), m)] = b[:m], lab[:m]
        return boxes, labels

    def num_objects(self) -> int:
        return int(sum(len(b) for b in self.boxes))


@dataclass
class DetDataset:
    train: DetSplit
    val: DetSplit
    test: DetSplit
    class_names: tuple[str, ...]
    image_size: tuple[int, int]
    channels: int
    source: str
    format: str = ""
    test_is_val: bool = False   # the folder gave train + val only: val is also the held-out test

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        parts = [f"{n} {len(s)} ({s.num_objects()} boxes)" for n, s in
                 (("train", self.train), ("val", self.val), ("test", self.test))]
        fmt = f" ({self.format})" if self.format else ""
        note = "; test = the folder's val split (it has no test split)" if self.test_is_val else ""
        return (f"{self.source}{fmt}: {self.num_classes} classes, {', '.join(parts)} images at "
                f"{self.image_size[0]}x{self.image_size[1]}x{self.channels}{note}")


def seeded_split(n: int, val_split: float, test_split: float, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (train, val, test), sorted; a seeded permutation cut in proportion."""
    idx = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_split)), int(round(n * val_split))
    if n_test + n_val >= n:
        n_test, n_val = 0, 0
    return (np.sort(idx[n_test + n_val:]), np.sort(idx[n_test:n_test + n_val]), np.sort(idx[:n_test]))
