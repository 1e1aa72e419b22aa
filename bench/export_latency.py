"""Export every variant of a model and time them all through the serving runtime, in ONE run.

    python bench/export_latency.py                      # mobilenetv2 (w 1.0) + resnet18 (w 0.5), 96 px
    python bench/export_latency.py --run runs/r1 --run runs/r2      # trained run dirs instead

Per file: size, p50 latency through `serving` (batch 1, 1 thread), the raw interpreter invoke
time measured in the same loop, the serving overhead, and GFLOP/s = model FLOPs (2 x the MACs
of models.summary) / p50. The single-thread numpy fp32 matmul GFLOP/s is measured in the same
run as the machine's yardstick. Goals (reported, met or not): fp32 TFLite >= 50% of matmul
GFLOP/s; int8 >= 1.5x faster than fp32 with <= 1 point accuracy drop; overhead <= 15%.

Without --run each model is quick-trained on `digits` as RGB (a few epochs, so the accuracy
numbers mean something; `shapes` is too hard to learn in a few CPU minutes). Every file is
timed in --repeats interleaved rounds and the best round's p50 is kept: on a shared machine,
other processes only ever add time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.atomic import write_json  # noqa: E402
from serving.machine import measured_on  # noqa: E402

GOALS = {"fp32_vs_matmul": 0.5, "int8_speedup": 1.5, "int8_max_drop": 0.01, "max_overhead_pct": 15.0}


def matmul_gflops(n: int = 1024, repeats: int = 7) -> float:
    """Best-of single-thread fp32 GEMM throughput of numpy's BLAS (2 n^3 FLOPs per product)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    best = float("inf")
    with threadpool_limits(1):
        a @ b
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def quick_run(name: str, width: float, size: int, epochs: int, out: Path, data: str = "digits",
              seed: int = 0) -> Path:
    """Train `name` briefly on `data` (RGB) and save a run dir (model.keras + config.yaml)."""
    import keras

    from models import create_model, save_model
    from pipeline.config import save_config
    from pipeline.data import DataConfig, load_dataset

    keras.utils.set_random_seed(seed)
    ds = load_dataset(DataConfig(source=data, seed=seed), image_size=(size, size), channels=3)
    model = create_model(name, num_classes=ds.num_classes, input_shape=(size, size, 3),
                         labels=ds.class_names, width=width)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    t = time.perf_counter()
    model.fit(ds.train.images.astype("float32"), ds.train.labels, epochs=epochs, batch_size=32,
              validation_data=(ds.val.images.astype("float32"), ds.val.labels), verbose=2)
    _, acc = model.evaluate(ds.test.images.astype("float32"), ds.test.labels, verbose=0)
    print(f"{name} w{width}: trained {epochs} epochs in {time.perf_counter() - t:.0f} s, "
          f"test accuracy {acc:.3f}")
    run = out / f"{name}_w{width}_{size}px_{data}"
    save_model(model, run / "model.keras")
    save_config({"data": {"source": data, "seed": seed},
                 "model": {"name": name, "input_shape": [size, size, 3], "options": {"width": width}}},
                run / "config.yaml")
    return run


def model_flops(model_path: Path) -> int:
    from models import load_model
    from models.summary import stage_table

    return 2 * sum(s.macs for s in stage_table(load_model(model_path)))


def export_all(run: Path) -> list[dict]:
    """All five formats; the gate is opened wide so every file is kept and measured."""
    from pipeline.config import load_config
    from pipeline.export import ExportConfig, export

    open_gate = [f"gate.{f}=0" for f in ("tflite_fp32", "tflite_fp16", "tflite_dynamic",
                                         "tflite_int8", "onnx")] + ["gate.max_accuracy_drop=1"]
    cfg = load_config(ExportConfig, [f"model={run}", f"out={run / 'export'}", *open_gate])
    return export(cfg).artifacts


def time_files(export_dir: Path, artifacts: list[dict], runs: int, repeats: int) -> dict[str, dict]:
    """Interleaved rounds over all files; per file the round with the lowest p50 is kept."""
    from serving.benchmark import run as benchmark

    rounds: dict[str, list[dict]] = {a["file"]: [] for a in artifacts}
    for r in range(repeats):
        for art in artifacts:
            rounds[art["file"]].append(benchmark(export_dir / art["file"], threads=1, runs=runs,
                                                 warmup=max(5, runs // 10), progress=False))
        print(f"  timing round {r + 1}/{repeats} done", flush=True)
    best = {}
    for name, results in rounds.items():
        best[name] = {**min(results, key=lambda x: x["latency_ms"]["p50"]),
                      "p50_rounds": [x["latency_ms"]["p50"] for x in results]}
    return best


def rows_for(run: Path, runs: int, repeats: int, matmul: float) -> dict:
    artifacts = export_all(run)
    flops = model_flops(run / "model.keras")
    timed = time_files(run / "export", artifacts, runs, repeats)
    rows = []
    for art in artifacts:
        t, p = timed[art["file"]], art["parity"]
        p50 = t["latency_ms"]["p50"]
        rows.append({"file": art["file"], "format": art["format"], "size_kb": art["size_bytes"] / 1024,
                     "p50_ms": p50, "p50_rounds_ms": t["p50_rounds"],
                     "invoke_ms": t["invoke_ms"]["p50"], "overhead_pct": t["overhead_pct"],
                     "gflops": flops / (p50 / 1e3) / 1e9, "accuracy": p["accuracy"],
                     "accuracy_keras": p["accuracy_keras"], "top1_agreement": p["top1_agreement"]})
    by = {r["format"]: r for r in rows}
    fp32, int8 = by["tflite_fp32"], by["tflite_int8"]
    goals = {
        "fp32_gflops_vs_matmul": fp32["gflops"] / matmul,
        "fp32_vs_matmul_met": fp32["gflops"] / matmul >= GOALS["fp32_vs_matmul"],
        "int8_speedup": fp32["p50_ms"] / int8["p50_ms"],
        "int8_accuracy_drop": int8["accuracy_keras"] - int8["accuracy"],
        "int8_met": (fp32["p50_ms"] / int8["p50_ms"] >= GOALS["int8_speedup"]
                     and int8["accuracy_keras"] - int8["accuracy"] <= GOALS["int8_max_drop"]),
        "max_overhead_pct": max(r["overhead_pct"] for r in rows),
        "overhead_met": max(r["overhead_pct"] for r in rows) <= GOALS["max_overhead_pct"],
    }
    return {"run": str(run), "model_flops": flops, "rows": rows, "goals": goals}


def table(result: dict, matmul: float) -> str:
    lines = [f"{Path(result['run']).name}: {result['model_flops'] / 1e9:.3f} GFLOPs/image",
             f"{'format':<16}{'size KB':>10}{'p50 ms':>9}{'invoke ms':>11}{'overhead':>10}"
             f"{'GFLOP/s':>9}{'% matmul':>10}{'accuracy':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['format']:<16}{r['size_kb']:>10.1f}{r['p50_ms']:>9.3f}{r['invoke_ms']:>11.3f}"
                     f"{r['overhead_pct']:>9.1f}%{r['gflops']:>9.1f}{100 * r['gflops'] / matmul:>9.1f}%"
                     f"{r['accuracy']:>10.4f}")
    g = result["goals"]
    yes = {True: "met", False: "NOT met"}
    lines += [f"goal fp32 >= 50% of matmul: {100 * g['fp32_gflops_vs_matmul']:.0f}% "
              f"({yes[g['fp32_vs_matmul_met']]})",
              f"goal int8 >= 1.5x fp32, drop <= 1 pt: {g['int8_speedup']:.2f}x, "
              f"{100 * g['int8_accuracy_drop']:+.2f} pt ({yes[g['int8_met']]})",
              f"goal overhead <= 15%: max {g['max_overhead_pct']:.1f}% ({yes[g['overhead_met']]})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mobilenetv2:1.0,resnet18:0.5", help="name:width,...")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--data", default="digits", help="quick-training data: digits | shapes | folder")
    ap.add_argument("--epochs", type=int, default=5, help="quick training epochs")
    ap.add_argument("--run", action="append", default=[], help="trained run dir(s) instead")
    ap.add_argument("--runs", type=int, default=100, help="timed predictions per file and round")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--workdir", default="", help="keep run dirs here (default: a temp dir)")
    ap.add_argument("--json", default="bench/results/export_latency.json")
    args = ap.parse_args(argv)

    matmul = matmul_gflops()
    print(f"numpy fp32 matmul, 1 thread: {matmul:.1f} GFLOP/s")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-export-"))
    runs = [Path(r) for r in args.run] or [
        quick_run(m.split(":")[0], float(m.split(":")[1]), args.size, args.epochs, work, args.data)
        for m in args.models.split(",")]
    results = []
    for run in runs:
        results.append(rows_for(run, args.runs, args.repeats, matmul))
        print(table(results[-1], matmul), flush=True)
    matmul_after = matmul_gflops()
    print(f"numpy fp32 matmul again at the end: {matmul_after:.1f} GFLOP/s")
    write_json(args.json, {"machine": measured_on(),
                           "matmul_gflops": matmul, "matmul_gflops_end": matmul_after,
                           "threads": 1, "goals": GOALS, "models": results})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
