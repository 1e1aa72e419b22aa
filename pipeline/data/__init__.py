"""Training data: sources (digits, shapes, image folders), seeded splits, tf.data pipelines.

    from pipeline.data import DataConfig, load_dataset, make_tf_dataset
    ds = load_dataset(DataConfig("shapes"), image_size=(64, 64), channels=3)
    train = make_tf_dataset(ds.train, image_size=(64, 64), channels=3, num_classes=ds.num_classes,
                            batch_size=64, training=True, augment=AugmentConfig("standard"))

Every image, from a file or generated, goes through the same Pillow decode/resize as serving
(serving.images). TensorFlow is imported only by make_tf_dataset.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.data.base import (
    BUILTIN_SOURCES,
    DETECTION_SOURCES,
    DataConfig,
    DataError,
    Dataset,
    ShapesConfig,
    Split,
)
from pipeline.data.split import stratified_split

if TYPE_CHECKING:
    import tensorflow as tf

    from pipeline.augment import AugmentConfig

__all__ = ["BUILTIN_SOURCES", "DataConfig", "DataError", "Dataset", "ShapesConfig", "Split",
           "load_dataset", "make_tf_dataset", "natural_input_shape", "stratified_split"]

FOLDER_INPUT = (96, 96, 3)
DIGITS_INPUT = (28, 28, 1)


def natural_input_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """Default model input for a source: digits (28, 28, 1), shapes its native size
    (data.shapes.size, 64 by default, 3 channels), folders (96, 96, 3)."""
    if cfg.source == "digits":
        return DIGITS_INPUT
    if cfg.source == "shapes":
        return (cfg.shapes.size, cfg.shapes.size, 3)
    if cfg.source == "shapes_det":
        return (cfg.shapes_det.size, cfg.shapes_det.size, 3)
    return FOLDER_INPUT


def _split_arrays(cfg: DataConfig, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                  image_size: tuple[int, int], channels: int) -> Dataset:
    tr, va, te = stratified_split(labels, cfg.val_split, cfg.test_split, cfg.seed)
    parts = [Split(labels[i], images=images[i]) for i in (tr, va, te)]
    return Dataset(*parts, class_names=class_names, image_size=tuple(image_size), channels=channels,
                   source=cfg.source)


def load_dataset(cfg: DataConfig, *, image_size: tuple[int, int], channels: int) -> Dataset:
    """Load and split the configured source, images as uint8 (H, W, channels) = model input."""
    image_size = (int(image_size[0]), int(image_size[1]))
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if cfg.source in DETECTION_SOURCES:
        raise DataError(f"data={cfg.source} is a detection source (boxes); use task=detection")
    if cfg.source == "digits":
        from pipeline.data.digits import CLASS_NAMES, load_digits_arrays

        images, labels = load_digits_arrays(image_size, channels)
        return _split_arrays(cfg, images, labels, CLASS_NAMES, image_size, channels)
    if cfg.source == "shapes":
        import PIL

        from pipeline.data import shapes
        from pipeline.data.arrays import to_model_images
        from pipeline.data.cache import cached

        images, labels = cached("shapes", (cfg.shapes, cfg.seed, np.__version__, PIL.__version__),
                                [shapes.__file__], lambda: shapes.generate_shapes(cfg.shapes, seed=cfg.seed))
        if images.shape[1:] != (*image_size, channels):
            images = to_model_images(images, image_size, channels)
        return _split_arrays(cfg, images, labels, cfg.shapes.class_names, image_size, channels)
    from pipeline.data.folder import load_folder

    return load_folder(cfg, image_size, channels)


def make_tf_dataset(split: Split, *, image_size: tuple[int, int], channels: int, num_classes: int,
                    batch_size: int, training: bool, augment: AugmentConfig | None = None,
                    seed: int = 0) -> tf.data.Dataset:
    """Batches of (float32 (B, H, W, C) pixels 0..255, float32 one-hot (B, num_classes)).

    Shuffles (seeded) and augments only when training=True; see pipeline.data.tfdata.
    """
    from pipeline.data.tfdata import make_tf_dataset as make

    return make(split, image_size=image_size, channels=channels, num_classes=num_classes,
                batch_size=batch_size, training=training, augment=augment, seed=seed)
