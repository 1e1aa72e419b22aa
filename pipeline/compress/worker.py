"""The compression worker: the child process that imports tfmot and fine-tunes.

    python -m pipeline.compress.worker job.json      (started by pipeline.compress.core)

Why a process of its own: importing tensorflow_model_optimization sets TF_USE_LEGACY_KERAS=1
for the whole process, so nothing else (Keras 3 training, export, serving) may share it.

The fine-tune IS pipeline.train.train (same tf.data pipeline, augmentation, schedule, epoch log,
best checkpoint, early stopping, BackupAndRestore resume, plots); an Initializer tells it to fit
the tfmot-wrapped tf_keras twin and how to get plain weights back for model.keras. prune_qat is
two such runs: pruning into <out>/stages/prune, then pruning-preserving QAT from it into <out>
(from a run that method=prune made, only the second).
The job's result (or a one-line error) is written as JSON to job["result"].
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from models.atomic import atomic_path, write_json
from models.options import OptionError

QAT_DIR = "qat"                      # in a QAT run dir: saved_model/ (the QAT graph), info.json
BEST_WEIGHTS = "best_training_weights.npz"   # the QAT graph's weights at the best epoch


def _watch_parent(parent: int) -> None:
    """Exit when the parent dies (a SIGKILLed CLI must not leave a training orphan behind)."""
    while True:
        if os.getppid() != parent:
            os._exit(137)
        time.sleep(0.5)


def _run_config(cfg: Any, tune: Any, method: str, out: Path) -> Any:
    from pipeline.compress.config import CompressRunConfig

    record = {"method": method, "from": cfg.start, "prune": dataclasses.asdict(cfg.prune),
              "qat": dataclasses.asdict(cfg.qat)}
    fields = {f.name: getattr(tune, f.name) for f in dataclasses.fields(tune)}
    return CompressRunConfig(**{**fields, "out": str(out), "overwrite": cfg.overwrite,
                                "compress": record})


def _evaluate(model: Any, ds: Any, n: int) -> float | None:
    from pipeline.tasks.classification.task import evaluate_split

    return None if ds is None else evaluate_split(model, ds, n)["accuracy"]


def _compressed_with(start: str) -> dict[str, Any] | None:
    """The `compress` block of a run made by pipeline.compress (None for any other source)."""
    from pipeline.compress.config import source_model

    metrics = source_model(start).parent / "metrics.json"
    if not metrics.is_file():
        return None
    record = json.loads(metrics.read_text()).get("compress")
    return record if isinstance(record, dict) else None


def origin_model(start: str) -> Path:
    """The uncompressed model behind `start` (itself unless it is a compressed run)."""
    from pipeline.compress.config import source_model

    record = _compressed_with(start)
    if record and record.get("source_model") and Path(record["source_model"]).is_file():
        return Path(record["source_model"])
    return source_model(start)


def stage(cfg: Any, tune: Any, method: str, start: str, out: Path) -> dict[str, Any]:
    """One fine-tune of `start` with `method` into `out`; returns its metrics."""
    import tf_keras

    from models import build_twin, get_contract, load_model
    from models.registry import family_config
    from pipeline.compress import tfmot_ops as ops
    from pipeline.compress.config import source_model
    from pipeline.compress.sparsity import model_sparsity
    from pipeline.train import Initializer, Phase, train
    from serving.manifest import sha256_file

    src_path = source_model(start)
    source = load_model(src_path)
    contract = get_contract(source)
    arch = contract.architecture
    twin = build_twin(source, tf_keras)           # the plan is checked before any training
    quantize = method in ("qat", "prune_qat")
    origin = origin_model(cfg.start)   # the uncompressed model (prune_qat's stage 2 starts from stage 1)
    info: dict[str, Any] = {"method": method, "from": str(cfg.start), "source_model": str(origin),
                            "source_sha256": sha256_file(origin), "started_from": str(src_path)}
    if quantize:
        qplan = ops.quantize_plan(twin)
        per_tensor = cfg.qat.weights == "per_tensor"
        counts = {k: sum(1 for v in qplan.values() if v == k)
                  for k in ("tfmot", "output", "none", "normalize")}
        info["qat"] = {"weights": "per_tensor" if per_tensor else "per_channel", "layers": counts,
                       "preserve_sparsity": method == "prune_qat"}
    else:
        classifier = tuple(family_config(arch["name"]).classifier)
        pplan = ops.prune_plan(twin, cfg.prune.dense, classifier)
        info["prune"] = {**dataclasses.asdict(cfg.prune), "target": cfg.prune.target, "layers": pplan}
    qat_dir = out / QAT_DIR
    init = Initializer(contract.input_shape, None, (Phase(end=tune.epochs, name=method),), info,
                       stage="compress", keras_module=tf_keras)

    def make_model(class_names: tuple[str, ...]) -> Any:
        if tuple(class_names) != tuple(contract.labels):
            raise OptionError(f"compress: the data's classes {list(class_names)[:5]} differ from "
                              f"the model's labels {list(contract.labels)[:5]} (data= must be the "
                              "data the source was trained on)")
        return load_model(src_path)

    def wrap(model: Any, steps: int) -> Any:
        if quantize:
            return ops.wrap_qat(model, qplan, per_tensor=per_tensor, preserve_sparsity=method == "prune_qat")
        s = cfg.prune.steps(tune.epochs, steps)
        info["prune"].update(s)
        init.first_best_epoch = s["first_pruned_epoch"]
        return ops.wrap_pruning(model, pplan, target=cfg.prune.target, schedule=cfg.prune.schedule,
                                structure=cfg.prune.structure, begin_step=s["begin_step"],
                                end_step=s["end_step"], frequency=s["frequency"])

    def keeper_weights(model: Any) -> list:
        if quantize:   # the QAT graph's own state (ranges included) for the export
            qat_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(qat_dir / BEST_WEIGHTS) as tmp, open(tmp, "wb") as f:
                np.savez(f, *model.get_weights())
        return ops.plain_weights(model, source)

    def finish(model: Any, final: Any, dataset: Any) -> dict[str, Any]:
        n = contract.num_classes
        before = load_model(origin)
        result: dict[str, Any] = {
            "accuracy_before": {s: _evaluate(before, dataset(s), n) for s in ("val", "test")},
            "sparsity": model_sparsity(final)}
        if quantize:
            best = qat_dir / BEST_WEIGHTS
            if tune.early_stopping.restore_best and best.is_file():
                with np.load(best) as saved:
                    model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
            ops.refresh_weight_ranges(model)
            result["accuracy_after"] = {s: _evaluate(model, dataset(s), n) for s in ("val", "test")}
            result["accuracy_after_float_weights"] = {s: _evaluate(final, dataset(s), n)
                                                      for s in ("val", "test")}
            graph = qat_dir / "saved_model"
            tmp = qat_dir / f".saved_model.tmp-{os.getpid()}"
            ops.save_qat_graph(model, str(tmp), contract.input_shape)
            if graph.exists():
                import shutil
                shutil.rmtree(graph)
            os.replace(tmp, graph)
            write_json(qat_dir / "info.json", {**info["qat"], "input_shape": list(contract.input_shape),
                                               "needs_calibration": ops.needs_calibration(qplan)})
        else:
            result["accuracy_after"] = {s: _evaluate(final, dataset(s), n) for s in ("val", "test")}
        acc = {k: "n/a" if result[k]["test"] is None else f"{result[k]['test']:.4f}"
               for k in ("accuracy_before", "accuracy_after")}
        print(f"compress: {method}: test accuracy {acc['accuracy_before']} -> {acc['accuracy_after']}, "
              f"sparsity {result['sparsity']['overall']:.3f}")
        return result

    init.make_model, init.wrap, init.keeper_weights, init.finish = make_model, wrap, keeper_weights, finish
    init.callbacks = ops.callbacks_for(method)
    metrics = train(_run_config(cfg, tune, method, out), init=init).metrics
    backup = out / "backup"
    if backup.is_dir() and not any(backup.iterdir()):
        backup.rmdir()   # tf_keras' BackupAndRestore leaves its emptied folder behind
    return metrics


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline import rundir
    from pipeline.compress.config import CompressConfig
    from pipeline.config import build

    cfg = build(CompressConfig, job["config"])
    tune = cfg.training()
    out = cfg.run_dir()
    if cfg.method != "prune_qat":
        return stage(cfg, tune, cfg.method, cfg.start, out)
    if (_compressed_with(cfg.start) or {}).get("method") == "prune":   # already pruned: stage 2 only
        return stage(cfg, tune, "prune_qat", cfg.start, out)
    pruned = out / "stages" / "prune"   # stage 1, a run dir of its own; reused once finished
    finished = (pruned / "metrics.json").is_file() and not rundir.run_paths(pruned).has_backup()
    if cfg.overwrite or not finished:
        stage(cfg, tune, "prune", cfg.start, pruned)
    return stage(cfg, tune, "prune_qat", str(pruned), out)


def main(argv: list[str]) -> int:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    from serving.native_logs import filtered

    with filtered():   # TensorFlow's import-time INFO lines (cuda stub, oneDNN); verbose=2 shows them
        import tensorflow_model_optimization  # noqa: F401  (imports TensorFlow, sets TF_USE_LEGACY_KERAS)
    job = json.loads(Path(argv[0]).read_text())
    result: dict[str, Any]
    try:
        result = {"ok": True, "metrics_path": str(Path(job["out"]) / "metrics.json")}
        run_job(job)
    except OptionError as e:
        result = {"ok": False, "kind": "option", "message": str(e)}
    except ValueError as e:   # a domain error is one line for the user; a library's keeps its traceback
        ours = type(e).__module__.split(".")[0] in ("models", "pipeline", "serving")
        if not ours:
            traceback.print_exc()
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        result = {"ok": False, "kind": "error",
                  "message": message if ours else f"{type(e).__name__}: {message}"}
    write_json(job["result"], result)
    return 0 if result["ok"] else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
