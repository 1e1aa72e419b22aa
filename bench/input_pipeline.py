"""Input-pipeline overhead: training images/s fed by the full tf.data augmentation pipeline
(pipeline.data.make_tf_dataset with an augment preset) vs the same training steps fed from
cached in-memory float32 tensors (no decoding, no augmentation, nothing to wait for).

    python bench/input_pipeline.py [--models resnet18:width=0.25,mobilenetv2:width=0.5]
        [--augment standard] [--batch 64] [--steps 40] [--rounds 3] [--out bench/results/input_pipeline.json]

Both feeds run in the same process, alternating, `--rounds` times; the table reports the
median and the best round, and the process CPU time per image (training + tf.data threads),
which other jobs on a shared machine disturb far less than wall time. Goal: overhead =
1 - augmented / cached <= 10%. Also reports the pipeline alone (iterating the augmented
dataset without training), the ceiling it could feed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.atomic import write_json  # noqa: E402
from serving.machine import measured_on  # noqa: E402

GOAL = 0.10


def parse_models(text: str) -> list[tuple[str, dict]]:
    from models.options import parse_value

    out = []
    for item in text.split(","):
        name, *opts = item.split(":")
        out.append((name, {k: parse_value(v) for k, v in (o.split("=") for o in opts)}))
    return out


def timed_fit(model, ds, warmup: int, steps: int, batch: int) -> tuple[float, float]:
    """(images/s, process CPU ms per image) over `steps` training steps after `warmup` ones.

    CPU time (all threads: training and tf.data) is what the augmentation really costs; it
    is far less disturbed than wall time by other jobs on a shared machine.
    """
    import keras

    stamps: list[tuple[float, float]] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, b, logs=None):
            stamps.append((time.perf_counter(), time.process_time()))

    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    (w0, c0), (w1, c1) = stamps[warmup - 1], stamps[-1]
    return steps * batch / (w1 - w0), (c1 - c0) * 1000 / (steps * batch)


def pipeline_only(ds, warmup: int, steps: int, batch: int) -> tuple[float, float]:
    """(images/s, process CPU ms per image) of iterating the dataset without training."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - t), (time.process_time() - c) * 1000 / (steps * batch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18:width=0.25,mobilenetv2:width=0.5")
    p.add_argument("--augment", default="standard", help="augment preset (none/light/standard/strong)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/input_pipeline.json")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from models import create_model
    from pipeline.augment import AugmentConfig
    from pipeline.data import DataConfig, ShapesConfig, load_dataset, make_tf_dataset

    keras.utils.set_random_seed(args.seed)
    data = load_dataset(DataConfig("shapes", seed=args.seed, shapes=ShapesConfig(size=args.size)),
                        image_size=(args.size, args.size), channels=3)
    train, k = data.train, data.num_classes
    augment = AugmentConfig(args.augment)
    augmented = make_tf_dataset(train, image_size=(args.size,) * 2, channels=3, num_classes=k,
                                batch_size=args.batch, training=True, augment=augment,
                                seed=args.seed).repeat()
    # Cached: float32 tensors made once, batches sliced from memory (the no-pipeline reference).
    n = len(train) - len(train) % args.batch
    x = tf.constant(train.images[:n].astype(np.float32))
    y = tf.one_hot(train.labels[:n], k)
    cached = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).cache().repeat()
    feeds = {"cached": cached, "augmented": augmented}

    rows = []
    for name, opts in parse_models(args.models):
        model = create_model(name, num_classes=k, input_shape=(args.size, args.size, 3), **opts)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
        timed_fit(model, cached, 2, 2, args.batch)                   # trace and build once
        runs: dict[str, list[tuple[float, float]]] = {f: [] for f in feeds}
        for _ in tqdm(range(args.rounds), desc=name, unit="round"):
            for feed, ds in feeds.items():                            # alternate: same load for both
                runs[feed].append(timed_fit(model, ds, args.warmup, args.steps, args.batch))
        ips = {f: statistics.median(v for v, _ in r) for f, r in runs.items()}
        best = {f: max(v for v, _ in r) for f, r in runs.items()}
        cpu = {f: statistics.median(c for _, c in r) for f, r in runs.items()}
        rows.append({"model": name, "options": opts, "params": int(model.count_params()),
                     "cached_img_s": round(ips["cached"], 1), "augmented_img_s": round(ips["augmented"], 1),
                     "overhead": round(1 - ips["augmented"] / ips["cached"], 4),
                     "best_cached_img_s": round(best["cached"], 1),
                     "best_augmented_img_s": round(best["augmented"], 1),
                     "overhead_best": round(1 - best["augmented"] / best["cached"], 4),
                     "cached_cpu_ms_img": round(cpu["cached"], 3),
                     "augmented_cpu_ms_img": round(cpu["augmented"], 3),
                     "cpu_overhead": round(cpu["augmented"] / cpu["cached"] - 1, 4),
                     "runs": {f: [[round(v, 1), round(c, 3)] for v, c in r] for f, r in runs.items()}})
    alone, alone_cpu = pipeline_only(augmented, args.warmup, args.steps * 4, args.batch)
    for r in rows:   # if training kept every core busy, the pipeline's CPU time would add up
        r["estimated_overhead"] = round(alone_cpu / (alone_cpu + r["cached_cpu_ms_img"]), 4)

    head = (f"{'model':<26}{'params':>9}{'cached img/s':>14}{'augmented':>11}{'overhead':>10}"
            f"{'best-of':>9}{'CPU ms/img':>12}{'augmented':>11}{'CPU overhead':>14}")
    print(f"\ninput pipeline, shapes {args.size}px, batch {args.batch}, augment={args.augment}, "
          f"{args.steps} steps x {args.rounds} rounds (median), {os.cpu_count()} CPU cores")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        label = r["model"] + "".join(f" {k}={v}" for k, v in r["options"].items())
        print(f"{label:<26}{r['params']:>9,}{r['cached_img_s']:>14.1f}{r['augmented_img_s']:>11.1f}"
              f"{r['overhead']:>10.1%}{r['overhead_best']:>9.1%}{r['cached_cpu_ms_img']:>12.2f}"
              f"{r['augmented_cpu_ms_img']:>11.2f}{r['cpu_overhead']:>14.1%}")
    print("overhead = 1 - augmented/cached img/s (median of rounds; best-of: fastest round each); "
          "CPU overhead: extra process CPU time per image")
    print(f"augmentation pipeline alone (no training): {alone:.0f} img/s, {alone_cpu:.3f} CPU ms/img; "
          f"estimated overhead if training kept the cores busy: "
          + ", ".join(f"{r['model']} {r['estimated_overhead']:.1%}" for r in rows))
    print(f"goal: overhead <= {GOAL:.0%}")
    result = {"bench": "input_pipeline", "augment": augment.preset, "image_size": args.size,
              "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
              "pipeline_only_img_s": round(alone, 1),
              "pipeline_only_cpu_ms_img": round(alone_cpu, 4), "goal_overhead": GOAL, "rows": rows,
              "machine": measured_on()}
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
