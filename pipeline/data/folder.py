"""The image-folder source: `<root>/<class>/<image>`, one subfolder per class.

Explicit splits are taken from `<root>/train|val|test/<class>/...` (also `valid`,
`validation`) or from `data.val_dir` / `data.test_dir`; whatever is not given explicitly is
cut from the training images by a seeded stratified split. Every file is decoded with
serving.images.load_image, the same code that serves the model, so training and serving see
the same pixels. Folders too big for `data.max_memory_mb` keep file paths (decoded in tf.data).
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.options import OptionError
from pipeline.data.base import DataConfig, DataError, Dataset, Split
from pipeline.data.split import stratified_split
from serving.images import ImageError, load_image, probe_image

SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SHOW_BAD = 3   # names listed in the skip warning


class BadFilesWarning(UserWarning):
    """Files skipped because of data.skip_bad_files=true."""


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def scan_classes(folder: Path, what: str) -> dict[str, list[str]]:
    """{class name: sorted files} for `folder/<class>/...`; every non-hidden file counts."""
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder does not exist")
    classes = {}
    for d in _subdirs(folder):
        files = sorted(str(p) for p in d.rglob("*")
                       if p.is_file() and not any(q.startswith(".") for q in p.relative_to(d).parts))
        if not files:
            raise DataError(f"{d}: class folder {d.name!r} has no images")
        classes[d.name] = files
    if not classes:
        raise DataError(f"{folder}: no class subfolders; put the images of each class in "
                        f"{folder}/<class name>/")
    return classes


def find_split_folders(cfg: DataConfig) -> dict[str, Path]:
    """{'train': ..., 'val': ..., 'test': ...} for the splits given as folders."""
    root = Path(cfg.source).expanduser()
    if not root.is_dir():
        raise OptionError(f"data.source: {cfg.source!r} is not 'digits', 'shapes' or an "
                          f"existing image folder")
    subs = {p.name.lower(): p for p in _subdirs(root)}
    folders = {"train": root}
    if "train" in subs and set(subs) <= set(SPLIT_DIRS):
        folders = {}
        for name, p in subs.items():
            if SPLIT_DIRS[name] in folders:
                raise DataError(f"{root}: both {folders[SPLIT_DIRS[name]].name!r} and {p.name!r} "
                                f"look like the {SPLIT_DIRS[name]} split; keep one")
            folders[SPLIT_DIRS[name]] = p
    for key, split in (("val_dir", "val"), ("test_dir", "test")):
        if getattr(cfg, key):
            folders[split] = Path(getattr(cfg, key)).expanduser()
    return folders


def _report_bad(bad: list[str], total: int) -> None:
    names = ", ".join(Path(b).name for b in bad[:SHOW_BAD]) + (", ..." if len(bad) > SHOW_BAD else "")
    warnings.warn(f"skipped {len(bad)} of {total} files that could not be decoded "
                  f"(data.skip_bad_files=true): {names}", BadFilesWarning, stacklevel=3)


def decode_files(paths: list[str], size: tuple[int, int], channels: int,
                 skip_bad_files: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 (M, H, W, C) images of the good files, bool (N,) keep mask, the bad files' errors."""
    out = np.empty((len(paths), size[0], size[1], channels), np.uint8)
    keep = np.ones(len(paths), bool)
    errors: list[str] = []

    def one(i: int) -> str | None:
        try:
            out[i] = load_image(paths[i], size=size, channels=channels)
        except ImageError as e:
            return str(e)
        return None

    # Pillow releases the GIL while decoding, so threads help.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(one, range(len(paths)))
        for i, err in enumerate(tqdm(results, total=len(paths), desc="decoding images",
                                     unit="img", disable=len(paths) < 500, leave=False)):
            if err is None:
                continue
            if not skip_bad_files:
                raise DataError(err)
            keep[i] = False
            errors.append(paths[i])
    return out[keep], keep, errors


def _probe_files(paths: list[str], skip_bad_files: bool) -> tuple[np.ndarray, list[str]]:
    keep = np.ones(len(paths), bool)
    bad = []
    for i, p in enumerate(tqdm(paths, desc="checking images", unit="img",
                               disable=len(paths) < 2000, leave=False)):
        try:
            probe_image(p)
        except ImageError as e:
            if not skip_bad_files:
                raise DataError(str(e)) from None
            keep[i] = False
            bad.append(p)
    return keep, bad


def load_folder(cfg: DataConfig, image_size: tuple[int, int], channels: int) -> Dataset:
    folders = find_split_folders(cfg)
    scanned = {split: scan_classes(folder, split) for split, folder in folders.items()}
    class_names = tuple(scanned["train"])
    if len(class_names) < 2:
        raise DataError(f"{folders['train']}: found one class folder ({class_names[0]!r}); "
                        f"a classifier needs at least two")
    index = {c: i for i, c in enumerate(class_names)}
    files: dict[str, list[str]] = {}
    labels: dict[str, np.ndarray] = {}
    for split, classes in scanned.items():
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise DataError(f"{folders[split]}: {split} class folder {unknown[0]!r} is not a class "
                            f"of the training folder {folders['train']}")
        files[split] = [f for c in classes for f in classes[c]]
        labels[split] = np.array([index[c] for c in classes for _ in classes[c]], np.int32)

    # train + val only: val is the held-out test split too, rather than training files the
    # folder's author meant for training. Otherwise cut what is missing (stratified, seeded).
    test_is_val = "val" in files and "test" not in files and len(files["val"]) > 0
    tr_idx, va_idx, te_idx = stratified_split(
        labels["train"], 0.0 if "val" in files else cfg.val_split,
        0.0 if "test" in files or test_is_val else cfg.test_split, cfg.seed)
    train_files, train_labels = files["train"], labels["train"]
    for split, idx in (("val", va_idx), ("test", te_idx)):
        if split not in files:
            files[split] = [train_files[i] for i in idx]
            labels[split] = train_labels[idx]
    files["train"] = [train_files[i] for i in tr_idx]
    labels["train"] = train_labels[tr_idx]

    total = sum(len(f) for s, f in files.items() if not (s == "test" and test_is_val))
    need_mb = total * image_size[0] * image_size[1] * channels / 2**20
    lazy = need_mb > cfg.max_memory_mb
    splits, bad_all = {}, []
    for split in ("train", "val", "test"):
        if split == "test" and test_is_val:
            splits[split] = splits["val"]
            continue
        if lazy:
            keep, bad = _probe_files(files[split], cfg.skip_bad_files)
            kept = [f for f, k in zip(files[split], keep) if k]
            splits[split] = Split(labels[split][keep], paths=kept, cache=cfg.cache,
                                  skip_bad_files=cfg.skip_bad_files)
        else:
            images, keep, bad = decode_files(files[split], image_size, channels, cfg.skip_bad_files)
            splits[split] = Split(labels[split][keep], images=images)
        bad_all += bad
    if bad_all:
        _report_bad(bad_all, total)
    counts = splits["train"].class_counts(len(class_names))
    if (counts == 0).any():
        empty = class_names[int(np.argmin(counts))]
        raise DataError(f"{folders['train']}: class {empty!r} has no readable training images")
    return Dataset(splits["train"], splits["val"], splits["test"], class_names,
                   tuple(image_size), channels, str(cfg.source), test_is_val)
