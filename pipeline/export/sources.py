"""What an export starts from: the model file, its run config, and the images it needs.

A run dir (written by `python -m pipeline train`) holds model.keras and config.yaml, whose
`data:` section says where the training images came from. Calibration (tflite_int8) uses a
seeded sample of the TRAINING split; the parity gate uses the TEST split (held out from
training). `calib=<digits|shapes|folder>` replaces the run's data source, and is needed for a
bare .keras file without a config.yaml beside it. Everything here is checked before any
conversion starts, and nothing here imports TensorFlow.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.contract import DataContract
from models.io import ModelFileError, read_contract
from models.options import OptionError
from pipeline.config import build
from pipeline.data import DataConfig
from pipeline.rundir import RUN_CONFIG, read_run_config

MODEL_FILE = "model.keras"
QAT_METHODS = ("qat", "prune_qat")
QAT_GRAPH = "qat/saved_model"   # written by pipeline.compress for QAT runs


@dataclass
class Run:
    """A resolved export source."""
    model_path: Path
    run_dir: Path | None              # the folder holding model.keras and config.yaml, if any
    config: dict[str, Any] | None     # the run's resolved config (config.yaml), if any
    contract: DataContract
    data: Any                         # pipeline.data.DataConfig
    compression: dict[str, Any] | None = None   # a compressed run: what was done (metrics.json)

    @property
    def kind(self) -> str:
        """"qat" for a QAT/PQAT run (its QAT graph is the model), else "float"."""
        return "qat" if self.compression and self.compression["method"] in QAT_METHODS else "float"

    @property
    def qat_graph(self) -> Path | None:
        return self.run_dir / QAT_GRAPH if self.kind == "qat" and self.run_dir else None

    @property
    def origin(self) -> Path | None:
        """The uncompressed model a compressed run was made from (for the accuracy change)."""
        path = (self.compression or {}).get("source_model")
        return Path(path) if path and Path(path).is_file() else None


def _data_config(raw: Any, where: str) -> Any:
    try:
        return build(DataConfig, raw if isinstance(raw, dict) else {"source": raw}, "data")
    except OptionError as e:
        raise OptionError(f"{where}: {e}") from None


def resolve_run(model: str, calib: str = "") -> Run:
    """model: a run dir or a .keras file; calib: a data source overriding the run's."""
    path = Path(model).expanduser()
    if path.is_dir():
        run_dir, model_path = path, path / MODEL_FILE
        if not model_path.is_file():
            raise OptionError(f"model={model}: folder has no {MODEL_FILE} (is it a run dir?)")
    elif path.suffix == ".keras":
        if not path.is_file():
            raise OptionError(f"model={model}: no such file")
        model_path = path
        run_dir = path.parent if (path.parent / RUN_CONFIG).is_file() else None
    else:
        raise OptionError(f"model={model}: give a run dir or a .keras file"
                          + ("" if path.exists() else " (no such path)"))
    try:
        contract = read_contract(model_path)
    except ModelFileError as e:
        raise OptionError(str(e)) from None
    config = None
    if run_dir is not None and (run_dir / RUN_CONFIG).is_file():
        config = read_run_config(run_dir / RUN_CONFIG)
    if calib:
        data = _data_config({"source": calib}, "calib")
    elif config is not None and config.get("data") is not None:
        data = _data_config(config["data"], str(run_dir / RUN_CONFIG))
    else:
        raise OptionError(f"model={model}: no {RUN_CONFIG} with a data: section beside it; give "
                          "calib=<digits|shapes|image folder> for calibration and the parity test set")
    if data.is_folder and not Path(data.source).is_dir():
        raise OptionError(f"data source {data.source!r}: no such folder (give digits, shapes or "
                          "an image folder)")
    return Run(model_path, run_dir, config, contract, data, _compression(run_dir, config))


def _compression(run_dir: Path | None, config: dict[str, Any] | None) -> dict[str, Any] | None:
    """What pipeline.compress did to the run: method, options, sparsity, QAT scheme."""
    record = (config or {}).get("compress")
    if run_dir is None or not isinstance(record, dict):
        return None
    metrics = run_dir / "metrics.json"
    done = json.loads(metrics.read_text()).get("compress", {}) if metrics.is_file() else {}
    out = {"method": record.get("method"), "from": record.get("from"),
           "source_model": done.get("source_model"),
           "sparsity": (done.get("sparsity") or {}).get("overall"),
           "accuracy_before": done.get("accuracy_before"), "accuracy_after": done.get("accuracy_after")}
    if "prune" in done:
        out["prune"] = {k: done["prune"].get(k) for k in ("target", "schedule", "structure")}
    if "qat" in done:
        out["qat"] = {k: done["qat"].get(k) for k in ("weights", "preserve_sparsity")}
    if out["method"] in QAT_METHODS and not (run_dir / QAT_GRAPH / "saved_model.pb").is_file():
        raise OptionError(f"model={run_dir}: a {out['method']} run without {QAT_GRAPH} (unfinished? "
                          "re-run the compress command)")
    return out


def _check_labels(contract: DataContract, class_names: tuple[str, ...], source: str) -> None:
    """The dataset must label images the way the model does, or accuracy means nothing."""
    labels = tuple(contract.labels)
    if len(labels) != len(class_names):
        raise OptionError(f"data {source!r} has {len(class_names)} classes but the model has "
                          f"{len(labels)} labels")
    generic = labels == tuple(f"class_{i}" for i in range(len(labels)))
    if not generic and labels != tuple(class_names):
        raise OptionError(f"data {source!r} classes {list(class_names)[:5]}... differ from the "
                          f"model's labels {list(labels)[:5]}...")


@dataclass
class Images:
    """What the export needs from the data: calibration pixels and the held-out test set."""
    calibration: np.ndarray | None    # uint8 (n, H, W, C), training images
    test: np.ndarray                  # uint8 (m, H, W, C)
    test_labels: np.ndarray           # int32 (m,)
    calibration_info: dict[str, Any]
    test_info: dict[str, Any]
    test_split: Any = None            # detectors: the test DetSplit (boxes, labels per image)
    calibration_extra: np.ndarray | None = None   # more training images, none of `calibration`
                                                  # (int8 repair's "more calibration" fix)


def load_images(run: Run, task: Any, *, calib_samples: int, test_samples: int, seed: int,
                extra_calib: int = 0) -> Images:
    """Seeded samples: calib_samples training images (0 = none), test_samples test images
    (0 = the whole test split), through the task's loader (a detector's test split keeps its
    boxes: Images.test_split); extra_calib more training images that are not among the
    calibration ones (drawn last, so the other samples do not depend on it)."""
    c = run.contract
    ds = task.load_data(run.data, c.input_shape)
    _check_labels(c, tuple(ds.class_names), run.data.source)
    if len(ds.test) == 0:
        raise OptionError(f"data {run.data.source!r}: the test split is empty; the parity gate "
                          "needs held-out images (set data.test_split > 0)")
    rng = np.random.default_rng(seed)
    calib = None
    if calib_samples:
        n = min(calib_samples, len(ds.train))
        cidx = np.sort(rng.choice(len(ds.train), n, replace=False))
        calib, _, _ = task.gate_images(ds, cidx, c, "train")
    m = len(ds.test) if not test_samples else min(test_samples, len(ds.test))
    tidx = np.arange(m) if m == len(ds.test) else np.sort(rng.choice(len(ds.test), m, replace=False))
    test, labels, split = task.gate_images(ds, tidx, c, "test")
    extra = None
    if calib_samples and extra_calib:
        rest = np.setdiff1d(np.arange(len(ds.train)), cidx)
        if len(rest):
            pick = np.sort(rng.choice(rest, min(extra_calib, len(rest)), replace=False))
            extra, _, _ = task.gate_images(ds, pick, c, "train")
    source = run.data.source
    return Images(calib, test, labels,
                  {"source": f"{source} (train split, seed {seed})", "samples": 0 if calib is None
                   else len(calib)},
                  {"source": f"{source} (test split)", "samples": int(m)}, test_split=split,
                  calibration_extra=extra)
