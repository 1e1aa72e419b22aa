"""A disk cache for generated data sets.

The same generator, options and seed always draw the same arrays, and one main job needs them
in five processes (training, the export's calibration and parity split, the compression worker,
its export): 10,000 `shapes` scenes take 13 s to draw on 2 cores, and under a second to load.

    images, labels = cached("shapes", (cfg, seed), [shapes.__file__], lambda: generate_shapes(cfg, seed=seed))

The key is the sha256 of the generator's source files and of repr(key), so any edit of the
generator or any other option draws afresh: a stale entry can never be served. Entries live in
$CNN_PIPELINE_CACHE (default ~/.cache/cnn-mobile-pipeline/data), are written atomically (temp
file + rename) and an unreadable one is drawn again. CNN_PIPELINE_CACHE=off turns the cache off.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.atomic import atomic_path

OFF = ("off", "0", "false", "none")


def cache_dir() -> Path | None:
    """Where entries go, or None when the cache is off."""
    value = os.environ.get("CNN_PIPELINE_CACHE", "").strip()
    if value.lower() in OFF:
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "cnn-mobile-pipeline" / "data"


def entry_key(key: Any, sources: Sequence[str | os.PathLike]) -> str:
    digest = hashlib.sha256(repr(key).encode())
    for src in sources:
        digest.update(Path(src).read_bytes())
    return digest.hexdigest()[:32]


def cached(name: str, key: Any, sources: Sequence[str | os.PathLike],
           make: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """make()'s arrays, from the cache when an entry for (sources, key) exists; stored after."""
    root = cache_dir()
    if root is None:
        return tuple(make())
    path = root / f"{name}-{entry_key(key, sources)}.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            return tuple(saved[f"arr_{i}"] for i in range(len(saved.files)))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass   # absent or damaged: draw it again
    arrays = tuple(make())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, *arrays)
    except OSError:
        pass   # a read-only or full disk only costs the time to draw it next time
    return arrays
