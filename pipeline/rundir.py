"""The run directory (`out=`) of a training run, and whether a new call starts it or resumes it.

    out/
      config.yaml            resolved config (pipeline.config.save_config)
      model.keras            best weights (by val accuracy), contract with class names inside
      metrics.json           test/val/train accuracy, timing, per-class accuracy, ...
      curves.png             loss/accuracy train vs val, learning rate
      confusion_matrix.png   test set (val set when there is no test split)
      pr_curves.png          task=detection: precision-recall per class at IoU 0.5 (test, else val)
      val_predictions.png    task=detection: predicted and true boxes on test (else val) images
      logs/train.csv         one row per epoch (pipeline.callbacks.EpochLog)
      logs/tensorboard/      TensorBoard event files
      backup/                keras.callbacks.BackupAndRestore state while a run is unfinished
      worker-N/              the same for worker N of a multi-worker run (the chief writes out/)

Re-running the same command on a run dir with a backup resumes it; a finished run (metrics.json,
no backup) is not overwritten unless overwrite=true; a backup from different options is an error.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from models.options import OptionError

RUN_CONFIG = "config.yaml"

# keys that may change between a killed run and its resumption
RESUMABLE_CHANGES = ("epochs", "verbose", "overwrite")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def confusion(self) -> Path:
        return self.root / "confusion_matrix.png"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "train.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / "logs" / "tensorboard"

    @property
    def pr_curves(self) -> Path:        # task=detection
        return self.root / "pr_curves.png"

    @property
    def val_grid(self) -> Path:         # task=detection: predicted and true boxes
        return self.root / "val_predictions.png"

    @property
    def backup(self) -> Path:
        return self.root / "backup"

    def artifacts(self) -> dict[str, Path]:
        return {name: getattr(self, name) for name in
                ("config", "model", "metrics", "curves", "confusion", "log", "tensorboard")}

    def has_backup(self) -> bool:
        return self.backup.is_dir() and any(self.backup.iterdir())


def run_paths(out: str | Path, worker_index: int = 0) -> RunPaths:
    root = Path(out)
    return RunPaths(root if worker_index == 0 else root / f"worker-{worker_index}")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for k, v in tree.items():
            flat.update(_flatten(v, f"{prefix}{k}."))
        return flat
    return {prefix[:-1]: tree}


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every option that differs (ignoring RESUMABLE_CHANGES)."""
    a, b = _flatten(saved), _flatten(current)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)]


def prepare(paths: RunPaths, config: dict[str, Any], *, overwrite: bool) -> bool:
    """Make the run dir ready; True when an interrupted run will be resumed."""
    root = paths.root
    if root.exists() and not root.is_dir():
        raise OptionError(f"out={root}: exists and is not a directory")
    if overwrite:
        for p in (paths.backup, paths.root / "logs"):
            shutil.rmtree(p, ignore_errors=True)
        for p in (paths.metrics, paths.model, paths.curves, paths.confusion):
            p.unlink(missing_ok=True)
        return False
    if paths.has_backup():
        saved = read_yaml(paths.config)
        changes = config_changes(saved, config) if saved is not None else []
        if changes:
            raise OptionError(f"out={root}: holds an interrupted run made with other options "
                              f"({'; '.join(changes[:4])}); re-run with the same options to resume "
                              "it, or choose another out= (or overwrite=true)")
        return True
    if paths.metrics.exists():
        raise OptionError(f"out={root}: holds a finished run (metrics.json); choose another out= "
                          "or pass overwrite=true")
    shutil.rmtree(paths.root / "logs", ignore_errors=True)   # a run killed before its first backup
    return False


def read_run_config(path: Path) -> dict[str, Any]:
    """A run dir's config.yaml, strictly: one clear error when it cannot be read."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise OptionError(f"{path}: cannot read the run config ({str(e).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise OptionError(f"{path}: a run config must be a mapping")
    return loaded


def read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None
