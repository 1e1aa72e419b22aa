"""What each compression technique costs and buys, on generated shapes (issue 10's table).

    python bench/compression.py [--models vgg11:0.25,resnet18:0.5,mobilenetv2:0.5] [--per-class 300]
                                [--epochs 10] [--tune-epochs 3] [--runs 100] [--variants base,QAT]
    python bench/compression.py --models mobilenetv2:0.5:40:1000,mobilenetv3_small:1.0:40:1000 \
                                --variants base,QAT --name compression_mobile     # well-trained mobile

For each model: train a source run (pipeline.train), export it (fp32, PTQ int8, ONNX int8), then
pipeline.compress: pruned 50/75/90% (each exported fp32, PTQ int8 and tflite_sparse), 2:4, QAT
(its int8 file from the QAT graph) and PQAT from the 75% run; every file is timed through serving
(batch 1, 1 thread). A model spec is name:width, or name:width:epochs:per_class for a source
trained longer than --epochs/--per-class say (the well-trained mobile sources; the row's model
label names it, and stage_seconds of its base rows is how long its training took).
Besides the ungated rows, each source's tflite_int8 and onnx_int8 are exported once more under
the DEFAULT gate with int8 repair on (pipeline.export.repair): variant "repaired" rows are the
files that came out of it (model_int8_mixed.*: the worst layers kept float; or a cheap fix),
with how many layers stayed float; every row carries the CPU's ISA.
The exports run with the gate's thresholds at 0 so every number is recorded; whether a file would
pass the default gate is a column, and so is each int8 file's kernel floor (kernel_floor()).
Writes bench/results/compression.json and .png (gzip size vs accuracy per model; a re-run of
some models replaces their rows and keeps the others', each model with the settings and machine
it was measured with), prints the table, and the CPU's ISA
(int8 speed differs between AVX2-only and VNNI machines). `vgg11:0.25` is the quick start's
model, trained exactly as the main job trains it (its 10 x 1000 shapes, no augmentation, 10
epochs; --per-class/--epochs do not apply).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.atomic import atomic_path, write_json  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.report import cpu_isa  # noqa: E402
from serving.machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NO_GATE = ["gate.tflite_fp32=0", "gate.tflite_fp16=0", "gate.tflite_dynamic=0", "gate.tflite_int8=0",
           "gate.onnx=0", "gate.onnx_int8=0", "gate.tflite_qat_int8=0", "gate.max_accuracy_drop=1"]
# variant -> (compress args or None for the source, formats exported)
VARIANTS = {
    "base": (None, "tflite_fp32,tflite_int8,onnx_int8"),
    "pruned 50%": (["method=prune", "prune.sparsity=0.5"], "tflite_fp32,tflite_int8,tflite_sparse"),
    "pruned 75%": (["method=prune", "prune.sparsity=0.75"], "tflite_fp32,tflite_int8,tflite_sparse"),
    "pruned 90%": (["method=prune", "prune.sparsity=0.9"], "tflite_fp32,tflite_int8,tflite_sparse"),
    "pruned 2:4": (["method=prune", "prune.structure=2:4"], "tflite_fp32,tflite_int8"),
    "QAT": (["method=qat"], "tflite_qat_int8"),
    "PQAT 75%": (["method=prune_qat"], "tflite_qat_int8"),   # from the pruned 75% run
}


QUICKSTART = "vgg11:0.25"   # the main job's model: trained with pipeline.run.quickstart_training()


def recipe(name: str, width: float, per_class: int, epochs: int) -> list[str]:
    opts = [f"model={name}", f"model.width={width}", "data=shapes",
            f"data.shapes.per_class={per_class}", f"epochs={epochs}", "batch_size=64",
            "optimizer=adamw", "weight_decay=0.0005", "schedule=cosine", "schedule.warmup_epochs=1",
            "verbose=2"]
    return opts + ["augment=none", f"lr={0.01 if name.startswith('mobilenet') else 0.003}"]


def gate_passes(art: dict) -> bool:
    from pipeline.export import GateConfig
    from pipeline.export.formats import FORMATS

    p, gate = art["parity"], GateConfig()
    drop_ok = not FORMATS[art["format"]].lossy or p["accuracy_drop"] <= gate.max_accuracy_drop + 1e-12
    return p["top1_agreement"] >= gate.min_agreement(art["format"]) and drop_ok


def kernel_floor(path: Path, images) -> float | None:
    """Top-1 agreement of a .tflite file with ITSELF on LiteRT's builtin kernels vs its default
    XNNPACK ones, over the test images: what 1-step rounding differences alone cost this model
    (an int8 file's agreement with its Keras model cannot be expected above it). None for fp32/ONNX."""
    import serving

    if path.suffix != ".tflite" or "int8" not in path.name:
        return None
    a = serving.load(path, manifest=None, threads=1).predict(images).argmax(1)
    b = serving.load(path, manifest=None, threads=1, kernels="builtin").predict(images).argmax(1)
    return float((a == b).mean())


def parse_spec(spec: str, args: argparse.Namespace) -> tuple[str, str, int, int, str]:
    """name:width[:epochs:per_class] -> (name, width, epochs, per_class, the rows' model label)."""
    parts = spec.split(":")
    if len(parts) not in (2, 4):
        raise SystemExit(f"--models: {spec!r} is not name:width or name:width:epochs:per_class")
    name, width = parts[:2]
    if len(parts) == 2:
        return name, width, args.epochs, args.per_class, f"{name} w{width}"
    epochs, per_class = int(parts[2]), int(parts[3])
    return name, width, epochs, per_class, f"{name} w{width} e{epochs} {per_class}/cls"


def bench_model(spec: str, args: argparse.Namespace, root: Path) -> list[dict]:
    from pipeline.compress import CompressConfig, compress
    from pipeline.export import ExportConfig, export
    from pipeline.run import quickstart_training
    from pipeline.train import TrainConfig, train
    from serving.benchmark import run as benchmark

    name, width, epochs, per_class, label = parse_spec(spec, args)
    src = root / label.replace(" ", "-").replace("/", "per")
    t0 = time.perf_counter()
    args.reused = (src / "metrics.json").is_file()   # runs under --root are reused, not retrained
    if not args.reused:
        if spec == QUICKSTART:   # exactly the main job's training (its data, recipe, epochs)
            train(dataclasses.replace(quickstart_training(), out=str(src), verbose=2))
        else:
            opts = recipe(name, float(width), per_class, epochs)
            train(load_config(TrainConfig, [*opts, f"out={src}"]))
    train_s = time.perf_counter() - t0
    isa = cpu_isa()
    from pipeline.export.sources import load_images, resolve_run
    from pipeline.tasks import get_task

    test = load_images(resolve_run(str(src)), get_task("classification"), calib_samples=0,
                       test_samples=0, seed=0).test
    rows = []
    for variant, (how, formats) in VARIANTS.items():
        if variant not in args.variants:
            continue
        run, seconds = src, train_s
        if how is not None:
            run = root / f"{src.name}-{variant.replace(' ', '').replace('%', '').replace(':', 'of')}"
            start = root / f"{src.name}-pruned75" if variant.startswith("PQAT") else src
            t0 = time.perf_counter()
            if not (run / "metrics.json").is_file():
                compress(load_config(CompressConfig, [f"from={start}", *how, f"epochs={args.tune_epochs}",
                                                      "verbose=2", f"out={run}"]))
            seconds = time.perf_counter() - t0
        result = export(load_config(ExportConfig, [f"model={run}", f"formats={formats}", "verbose=false",
                                                   *NO_GATE]))
        arts = [(variant, a) for a in result.artifacts]
        if variant == "base":
            arts += [("repaired", a) for a in repaired(run, root, export, args.attempts)]
        for variant_of, art in arts:
            out_dir = run / "export-repaired" if variant_of == "repaired" else result.out_dir
            b = benchmark(out_dir / art["file"], threads=1, runs=args.runs, warmup=10, progress=False)
            p = art["parity"]
            fix = (art.get("int8_repair") or {}).get("result") or {}
            rows.append({"model": label, "variant": variant_of, "file": art["file"],
                         "format": art["format"], "accuracy": p["accuracy"],
                         "accuracy_source": p.get("accuracy_source", p["accuracy_keras"]),
                         "agreement": p["top1_agreement"], "passes_default_gate": gate_passes(art),
                         "size_kb": art["size_bytes"] / 1024, "gzip_kb": art["size_gzip_bytes"] / 1024,
                         "sparsity": art["sparsity"], "p50_ms": b["latency_ms"]["p50"],
                         "kernel_floor": kernel_floor(out_dir / art["file"], test),
                         "stage_seconds": seconds, "isa": isa, "repair": fix.get("fix"),
                         "float_layers": len(fix.get("float_layers") or []),
                         "layers_total": fix.get("layers_total")})
            print(_line(rows[-1]), flush=True)
    return rows


def repaired(run: Path, root: Path, export: object, attempts: list[dict]) -> list[dict]:
    """tflite_int8 and onnx_int8 of `run` under the default gate with int8 repair on: the
    manifest rows of the files the repair made (none when the plain files passed); every repair
    attempt (fix, agreement, passed) is appended to `attempts`, also when nothing passed."""
    from pipeline.export import ExportConfig, GateError, IncompleteExportError

    failed: list[dict] = []
    try:
        result = export(load_config(ExportConfig, [f"model={run}", "formats=tflite_int8,onnx_int8",
                                                   "verbose=false", f"out={run / 'export-repaired'}"]))
        arts = result.artifacts
        failed = list(getattr(result, "failed", []))
    except IncompleteExportError as e:   # a file neither passed nor was repaired: still its rows
        arts, failed = e.result.artifacts, list(e.result.failed)
    except GateError as e:               # nothing passed: no file, but the attempts are recorded
        arts, failed = [], e.failed
    for record in [*failed, *arts]:
        rep = record.get("int8_repair") or {}
        for a in rep.get("attempts", []):
            attempts.append({"file": record["file"], "fix": a["fix"], "passed": a["passed"],
                             "agreement": a.get("top1_agreement"), "accuracy": a.get("accuracy"),
                             "worst_layers": [x["layer"] for x in rep["diagnosis"]["layers"][:5]],
                             "layers_total": rep["diagnosis"]["layers_total"]})
            print(f"  repair {record['file']}: {a['fix'][:70]:<70} agreement "
                  f"{a.get('top1_agreement') or 0:.3f} {'pass' if a['passed'] else 'fail'}", flush=True)
    return [a for a in arts if a.get("int8_repair")]


HEADER = (f"{'model':<34}{'variant':<12}{'file':<26}{'acc':>7}{'src':>7}{'agree':>7}{'floor':>7}{'gate':>6}"
          f"{'KB':>9}{'gzip KB':>9}{'zeros':>7}{'p50 ms':>8}{'stage s':>9}  float layers")


def _line(r: dict) -> str:
    gate = "pass" if r["passes_default_gate"] else "FAIL"
    floor = "-" if r.get("kernel_floor") is None else f"{r['kernel_floor']:.3f}"
    kept = f"  {r['float_layers']}/{r['layers_total']}" if r.get("layers_total") else ""
    return (f"{r['model']:<34}{r['variant']:<12}{r['file']:<26}{r['accuracy']:>7.3f}"
            f"{r['accuracy_source']:>7.3f}{r['agreement']:>7.3f}{floor:>7}{gate:>6}{r['size_kb']:>9.1f}"
            f"{r['gzip_kb']:>9.1f}{r['sparsity']:>7.2f}{r['p50_ms']:>8.3f}{r['stage_seconds']:>9.1f}{kept}")


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        pts = ax.scatter([r["gzip_kb"] for r in mine], [100 * r["accuracy"] for r in mine],
                         c=[r["p50_ms"] for r in mine], cmap="viridis_r", s=60, edgecolors="black")
        for r in mine:
            label = f"{r['variant']} {r['format'].replace('tflite_', '')}"
            ax.annotate(label, (r["gzip_kb"], 100 * r["accuracy"]), fontsize=6, xytext=(4, 3),
                        textcoords="offset points")
        fig.colorbar(pts, ax=ax, label="p50 ms (1 thread)")
        ax.set(xscale="log", xlabel="gzip size (KB, log)", ylabel="test accuracy (%)", title=model)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())   # no overlapping 3x10^2 4x10^2
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="vgg11:0.25,resnet18:0.5,mobilenetv2:0.5")
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--tune-epochs", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--root", default="runs/bench-compression")
    ap.add_argument("--name", default="compression")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="which of: " + ", ".join(VARIANTS))
    args = ap.parse_args(argv)
    args.variants = args.variants.split(",")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    root = Path(args.root)
    out = RESULTS / f"{args.name}.json"
    # one model's rows are replaced by a re-run of that model; other models' rows (and the
    # settings and machine they were measured with) are kept
    keep = json.loads(out.read_text()) if out.is_file() else {"rows": [], "models": {}}
    runs_now = {parse_spec(spec, args)[4] for spec in args.models.split(",")}
    rows = [r for r in keep["rows"] if r["model"] not in runs_now]
    models = {m: v for m, v in keep.get("models", {}).items() if m not in runs_now}
    t0 = time.perf_counter()
    print(HEADER, flush=True)
    isa = cpu_isa()
    for spec in args.models.split(","):   # results are written after each model
        t_model = time.perf_counter()
        args.attempts = []
        mine = bench_model(spec, args, root)
        rows += mine
        _, _, epochs, per_class, label = parse_spec(spec, args)
        models[label] = {
            "isa": isa, "cpus": os.cpu_count(),
            "per_class": "quickstart" if spec == QUICKSTART else per_class,
            "epochs": epochs, "tune_epochs": args.tune_epochs, "runs": args.runs,
            "wall_seconds": time.perf_counter() - t_model, "machine": machine_info(),
            "source_run_reused": args.reused, "repair_attempts": args.attempts}
        write_json(out, {"meta": {"isa": isa, "wall_seconds": time.perf_counter() - t0}, "models": models,
                         "rows": rows})
        plot(rows, RESULTS / f"{args.name}.png",
             f"shapes, source {args.epochs} epochs ({args.per_class}/class; the quick start: its own data "
             f"and recipe), compression {args.tune_epochs} epochs; CPU ISA {isa}; latency 1 thread")
    print("\n" + HEADER + "\n" + "\n".join(_line(r) for r in rows))
    print(f"CPU ISA: {isa}; wrote {RESULTS / args.name}.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
