"""Split -> tf.data pipeline: (decode) -> cache -> shuffle -> batch -> float/one-hot ->
augment -> prefetch (the input-pipeline pattern of the TF guide "Better performance with the
tf.data API": cache before the random work, map in parallel, prefetch last).

Images stay uint8 until batching (4x less to cache and shuffle); batches are float32 pixels in
0..255, since normalisation is the model's first layer. Files of a lazy Split are decoded
with serving.images.load_image inside the pipeline, never with tf.io decoders.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from pipeline.data.base import Split
from pipeline.data.folder import BadFilesWarning
from serving.images import ImageError, load_image

if TYPE_CHECKING:
    from pipeline.augment import AugmentConfig

AUTOTUNE = tf.data.AUTOTUNE


def _decoded_files(split: Split, size: tuple[int, int], channels: int,
                   shuffle_seed: int | None) -> tf.data.Dataset:
    """(uint8 (H, W, C), int32) elements decoded from split.paths in parallel."""
    h, w = size

    def decode(path: bytes) -> tuple[np.ndarray, bool]:
        try:
            return load_image(path.decode(), size=(h, w), channels=channels), True
        except ImageError as e:
            if not split.skip_bad_files:
                raise
            # Only the header was checked up front, so this is counted here, one line per file.
            warnings.warn(f"skipped {e} (data.skip_bad_files=true)", BadFilesWarning, stacklevel=1)
            return np.zeros((h, w, channels), np.uint8), False

    def tf_decode(path, label):
        image, ok = tf.numpy_function(decode, [path], (tf.uint8, tf.bool), stateful=False)
        image.set_shape((h, w, channels))
        return image, label, ok

    ds = tf.data.Dataset.from_tensor_slices((np.asarray(split.paths, dtype=object).astype(str),
                                             split.labels))
    if shuffle_seed is not None:   # not cached: shuffle the cheap paths, not decoded images
        ds = ds.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.map(tf_decode, num_parallel_calls=AUTOTUNE)
    if split.skip_bad_files:   # files that passed the header probe but fail to decode
        ds = ds.filter(lambda image, label, ok: ok)
    return ds.map(lambda image, label, ok: (image, label))


def make_tf_dataset(split: Split, *, image_size: tuple[int, int], channels: int, num_classes: int,
                    batch_size: int, training: bool, augment: AugmentConfig | None = None,
                    seed: int = 0) -> tf.data.Dataset:
    """Batches of (float32 (B, H, W, C) pixels 0..255, float32 one-hot (B, num_classes)).

    Shuffles (seeded, new order each epoch) and augments only when training=True.
    """
    h, w = int(image_size[0]), int(image_size[1])
    if len(split) == 0:
        raise ValueError("make_tf_dataset got an empty split")
    if split.labels.max() >= num_classes:
        raise ValueError(f"label {split.labels.max()} is out of range for {num_classes} classes")
    cache = split.cache
    if split.images is not None:
        if split.images.shape[1:] != (h, w, channels):
            raise ValueError(f"split images are {split.images.shape[1:]}, asked for {(h, w, channels)}; "
                             f"load the dataset with the model's input size")
        ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        if training:
            ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    else:
        cached = cache not in ("auto", "none")
        ds = _decoded_files(split, (h, w), channels, seed if training and not cached else None)
        if cached:
            ds = ds.cache() if cache == "memory" else ds.cache(cache)
            if training:   # bounded buffer: a folder too big for memory stays out of it
                ds = ds.shuffle(min(len(split), 8192), seed=seed, reshuffle_each_iteration=True)

    def to_float(images, labels):
        # (B, H, W, C) uint8 -> float32 0..255; (B,) int32 -> (B, num_classes) one-hot
        return tf.cast(images, tf.float32), tf.one_hot(labels, num_classes, dtype=tf.float32)

    ds = ds.batch(batch_size).map(to_float, num_parallel_calls=AUTOTUNE)
    if training and augment is not None:
        from pipeline.augment import augment_dataset

        ds = augment_dataset(ds, augment, seed=seed)
    return ds.prefetch(AUTOTUNE)
