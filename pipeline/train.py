"""Train a registered model on a dataset with Keras `fit` (d2l 7.6.2 / 8.x training loops, 12.11
learning-rate scheduling), into a self-describing run directory (see pipeline.rundir).

    python -m pipeline train data=digits model=lenet_bn epochs=15 out=runs/lenet
    python -m pipeline train data=shapes model=resnet18 model.width=0.5 augment=standard \
        optimizer=adamw lr=0.003 weight_decay=0.0005 schedule=cosine schedule.warmup_epochs=1

    from pipeline.train import TrainConfig, train
    result = train(load_config(TrainConfig, ["data=digits", "epochs=3", "out=/tmp/run"]))
    result.metrics["test_accuracy"], result.paths["model"]

What a run does: set the seeds, pick the tf.distribute strategy (pipeline.strategy; batch_size
is global), build the model twice (the training model under the strategy and precision policy,
and a float32 Keras 3 copy that every checkpoint is saved from, so model.keras never carries
an optimizer or a mixed-precision policy), fit with the callbacks of pipeline.callbacks and
keras.callbacks.BackupAndRestore (re-running a killed command resumes it), then evaluate the
best weights on train (without augmentation), val and test and write metrics and plots.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from typing import Any

from models import get_contract, load_model, save_model
from models.atomic import write_json
from models.options import OptionError
from pipeline import rundir
from pipeline.callbacks import BestCheckpoint, EpochLog, bind, fit_verbosity, make_callbacks
from pipeline.config import save_config, to_dict
from pipeline.data import natural_input_shape
from pipeline.optim import LRCurve, keras_schedule, lr_curve, make_optimizer
from pipeline.plots import plot_curves
from pipeline.strategy import make_placement, on_gpu
from pipeline.tasks import get_task
from pipeline.train_config import (  # noqa: F401 (re-exported: pipeline.train is the public name)
    EarlyStoppingConfig,
    Initializer,
    ModelConfig,
    Phase,
    TrainConfig,
    TrainResult,
)
from pipeline.transfer import backbone_layers, freeze, with_lr_multiplier
from serving.native_logs import without_noise


@contextlib.contextmanager
def precision_policy(k: Any, enabled: bool) -> Iterator[str]:
    """Set k's global dtype policy for the block only; yields the policy name in force."""
    if not enabled:
        yield "float32"
        return
    policy = "mixed_float16" if on_gpu() else "mixed_bfloat16"
    old = k.mixed_precision.global_policy()
    k.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        k.mixed_precision.set_global_policy(old)


def compile_for_training(model: Any, k: Any, cfg: TrainConfig, curve: LRCurve,
                         backbone_lr_mult: float = 1.0, contract: Any = None) -> Any:
    """Compile with the config's optimizer and schedule and the task's loss; `contract`: the
    model's (given when `model` is a twin that carries none, as a compression stage's is)."""
    if cfg.ema and k.__name__ != "keras":
        raise OptionError(f"ema={cfg.ema:g}: the weight average works with Keras 3 training and "
                          "fine-tuning, not in compression stages (their tf_keras twin); set ema=0")
    optimizer = make_optimizer(k, cfg.optimizer, keras_schedule(k, curve), momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, ema=cfg.ema)
    if backbone_lr_mult != 1.0:
        variables = [v for layer in backbone_layers(model) for v in layer.trainable_weights]
        optimizer = with_lr_multiplier(optimizer, variables, backbone_lr_mult)
    loss, metrics = get_task(cfg.task).loss_and_metrics(cfg, contract or get_contract(model), k)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=cfg.xla)
    return model


def _shard_by_data(ds: Any) -> Any:
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def phased_lr(phases: tuple[Phase, ...], curves: list[LRCurve], steps: int) -> Any:
    """lr at a run-wide step: each phase has its own schedule (its optimizer starts at step 0)."""
    def lr_at(step: int) -> float:
        start = 0
        for phase, curve in zip(phases, curves):
            if step < phase.end * steps or phase is phases[-1]:
                return curve.value(step - start * steps)
            start = phase.end
        return curves[-1].value(step)
    return lr_at


def train(cfg: TrainConfig, *, init: Initializer | None = None) -> TrainResult:
    """Train, checkpoint, evaluate and write the run directory; see the module docstring.

    init: start from given weights, in phases (pipeline.finetune); None = a fresh model.
    """
    t_start = time.perf_counter()
    placement = make_placement(cfg.strategy)   # first: multi-worker must set up the runtime
    import keras

    k = init.keras_module if init is not None and init.keras_module else placement.keras_module()
    task = get_task(cfg.task)
    recipe = None
    if init is None:
        cfg, recipe = task.recipe(cfg)   # model=auto: values from the data where the user set none
    cfg = dataclasses.replace(cfg, out=str(cfg.run_dir()))
    paths = rundir.run_paths(cfg.out, placement.worker_index)
    resuming = rundir.prepare(paths, to_dict(cfg), overwrite=cfg.overwrite)
    save_config(cfg, paths.config)
    keras.utils.set_random_seed(cfg.seed)

    if init is not None:
        task.finetune_supported()
    shape = tuple(init.input_shape if init else cfg.model.input_shape or natural_input_shape(cfg.data))
    data = task.load_data(cfg.data, shape)
    task.check_training_data(data)
    say = print if cfg.verbose else (lambda *a, **kw: None)
    if recipe:
        say(recipe)
    say(f"train: {data.summary()}; {placement.kind} strategy, {placement.replicas} replica(s), "
        f"{'resuming' if resuming else 'run dir'} {paths.root}")

    if init is None:
        phases = (Phase(end=cfg.epochs),)
        name = cfg.model.name
        build = dict(num_classes=data.num_classes, input_shape=shape, labels=data.class_names,
                     **cfg.family_options())
        keeper = task.build_model(name, **build)   # float32 Keras 3: what model.keras holds
    else:
        phases = init.phases
        keeper = init.make_model(data.class_names)
        contract = get_contract(keeper)
        name = contract.architecture["name"]
        build = dict(num_classes=data.num_classes, input_shape=shape, labels=data.class_names,
                     mean=contract.mean, std=contract.std, **contract.architecture["overrides"])

    contract = get_contract(keeper)

    def tf_data(split: Any, training: bool) -> Any:
        return task.tf_dataset(split, cfg=cfg, contract=contract, training=training)

    train_ds, val_ds = tf_data(data.train, True), tf_data(data.val, False)
    if placement.kind == "multi_worker":
        train_ds = _shard_by_data(train_ds)
        val_ds = None if val_ds is None else _shard_by_data(val_ds)
    steps = math.ceil(len(data.train) / cfg.batch_size)
    starts = [0] + [p.end for p in phases[:-1]]
    curves = [lr_curve(cfg.schedule, lr=cfg.lr, epochs=p.end - s, steps_per_epoch=steps)
              for p, s in zip(phases, starts)]

    def save_best(weights: list) -> None:
        if init is not None and init.keeper_weights is not None:
            weights = init.keeper_weights(model)   # the fitted model (bound below)
        keeper.set_weights(weights)
        save_model(keeper, paths.model)

    log = bind(k, EpochLog)(paths.log, phased_lr(phases, curves, steps), steps)
    monitor = task.monitor if val_ds is not None else "accuracy"
    best = bind(k, BestCheckpoint)(save_best, log, monitor=monitor, tiebreak=monitor[:-8] + "loss",
                                   patience=cfg.early_stopping.patience,
                                   min_delta=cfg.early_stopping.min_delta,
                                   first_epoch=init.first_best_epoch if init is not None else 0)
    t_fit = time.perf_counter()   # train_seconds: wall time from here to the end of fit
    with precision_policy(k, cfg.mixed_precision) as policy, placement.strategy.scope():
        model = task.build_model(name, keras_module=k, **build)
        if init is not None:
            model.set_weights(keeper.get_weights())
            if init.wrap is not None:
                model = init.wrap(model, steps)
                best.first_epoch = init.first_best_epoch   # wrap may set it from the steps
        for i, (phase, start, curve) in enumerate(zip(phases, starts, curves)):
            backup = paths.backup if len(phases) == 1 else paths.backup / f"phase{i + 1}"
            later = [paths.backup / f"phase{j + 1}" for j in range(i + 1, len(phases))]
            if resuming and any(b.is_dir() and any(b.iterdir()) for b in later):
                continue   # a later phase's backup holds the weights; this phase is done
            if init is not None:
                frozen = freeze(model, phase.freeze)
                say(f"phase {i + 1}/{len(phases)} ({phase.name}): epochs {start + 1}-{phase.end}, "
                    f"{len(frozen)} backbone layers frozen, backbone lr x{phase.backbone_lr_mult:g}")
            compile_for_training(model, k, cfg, curve, phase.backbone_lr_mult, contract)
            callbacks = make_callbacks(k, log=log, best=best, backup_dir=backup,
                                       hint=f"lr={cfg.lr:g}, optimizer={cfg.optimizer}",
                                       tensorboard_dir=paths.tensorboard,
                                       before_log=task.epoch_callbacks(k, data, shape),
                                       ema=cfg.ema > 0)
            if init is not None and init.callbacks:
                callbacks = [*init.callbacks(k), *callbacks]
            with without_noise():   # TF's cost-estimator warnings at verbose=2 (serving.native_logs)
                model.fit(train_ds, validation_data=val_ds, initial_epoch=start, epochs=phase.end,
                          callbacks=callbacks, verbose=fit_verbosity(cfg.verbose),
                          shuffle=False)   # the dataset shuffles
            if best.stopped_epoch is not None:
                break
        last_weights = model.get_weights()
    fit_seconds = time.perf_counter() - t_fit

    if cfg.early_stopping.restore_best and paths.model.exists():
        final = load_model(paths.model)
    else:
        save_best(last_weights)
        final = keeper
    rows = log.rows
    metrics, shown = task.evaluate(final, data, lambda split: tf_data(getattr(data, split), False))
    # wall time incl. validation, checkpoints and tf.data start-up (comparable with other tools'
    # times); a resumed run adds the epochs its earlier processes logged
    first = math.inf if log.start_epoch is None else log.start_epoch   # None: no epoch ran here
    earlier = [r for r in rows if r["epoch"] < first]
    train_seconds = fit_seconds + float(sum(r["epoch_seconds"] for r in earlier))
    metrics.update({
        "best_epoch": best.best_epoch + 1 if cfg.early_stopping.restore_best else len(rows),
        "epochs_run": len(rows), "epochs_planned": cfg.epochs,
        "stopped_early": best.stopped_epoch is not None,
        "resumed_from_epoch": log.start_epoch if resuming else None,
        "train_seconds": train_seconds,
        "images_per_second": len(data.train) * len(rows) / train_seconds if train_seconds else None,
        "wall_seconds": time.perf_counter() - t_start,
        "model": name, "params": int(keeper.count_params()), "input_shape": list(shape),
        "num_train": len(data.train), "num_val": len(data.val), "num_test": len(data.test),
        "test_is_val": data.test_is_val,   # a train + val folder: val is the held-out test split
        "strategy": placement.kind, "replicas": placement.replicas, "workers": placement.num_workers,
        "engine": f"{k.__name__} {k.__version__}", "precision": policy, "xla": cfg.xla,
        "task": cfg.task,
    })
    if init is not None:
        metrics[init.stage] = {**init.info, "phases": [dataclasses.asdict(p) for p in phases]}
        if init.finish is not None:
            metrics[init.stage].update(init.finish(model, final, lambda split: tf_data(
                getattr(data, split), False)))
    metrics.update(task.run_metrics(get_contract(final)))
    _write_outputs(paths, metrics, rows, data.class_names, cfg, name, shown, get_contract(final))
    artifacts = {**paths.artifacts(), **task.artifacts(paths)}
    key = task.metric
    say(f"train: test_{key} {metrics[f'test_{key}']}, val_{key} {metrics[f'val_{key}']}, "
        f"best epoch {metrics['best_epoch']}/{len(rows)}, {train_seconds:.1f}s wall training incl. "
        f"validation -> {paths.root}")
    return TrainResult(paths.root, metrics, artifacts, final)


def _write_outputs(paths: Any, metrics: dict[str, Any], rows: list[dict[str, Any]],
                   class_names: tuple[str, ...], cfg: TrainConfig, name: str,
                   shown: dict[str, Any], contract: Any) -> None:
    title = f"{name} on {cfg.data.source}"
    task = get_task(cfg.task)
    task.write_plots(paths, metrics, shown, class_names, title, contract)
    plot_curves(rows, paths.curves, title=title, best_epoch=metrics["best_epoch"], metric=task.metric)
    write_json(paths.metrics, metrics)
