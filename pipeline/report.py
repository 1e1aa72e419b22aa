"""`python -m pipeline report <run dir>`: one page on every exported variant of a run.

For each file in the export's manifest.json: size, latency through the serving runtime
(serving.benchmark.run, single thread by default: the phone-like setting, and on this shared
2-core machine two threads were slower than one), raw invoke time and serving overhead, and
the parity-gate numbers the export recorded (accuracy, top-1 agreement with Keras, max |dp|).
Writes report.json (all numbers), report.md (the table) and pareto.png (size vs p50 latency,
colour = accuracy; the size/latency Pareto front is drawn, so the variants worth shipping
stand out). Files the export did not publish are listed with their reasons; an int8 file that
failed its gate gets its per-layer diagnosis and repair attempts (report_int8.py, with
int8_diagnosis.png).

Detectors (task detection) get the same page with the task's own columns: latency is end to
end including the decoding + NMS inside the file (Runner.detect_batch), and the quality
columns are the detection gate's mAP@.5 and mAP@[.5:.95] (and Keras'), colour = mAP@[.5:.95];
recommend() picks the fastest file whose mAPs are within its gate's drop of Keras'.

Variants: runs beside this one that `python -m pipeline compress` made from it (their
metrics.json names this run's model.keras by sha256) and that have been exported are listed in
the same table and plot - PTQ files of the source, pruned, QAT and PQAT - each row with its
variant, size raw and gzip-compressed (the usual measure for pruned weights), and the CPU's
ISA (int8 speed differs between AVX2-only and VNNI machines).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from models.atomic import atomic_path, write_json, write_text
from models.options import OptionError
from pipeline import report_int8
from pipeline.tasks import Task, get_task
from serving.benchmark import run as benchmark
from serving.machine import describe, machine_info
from serving.manifest import read_manifest, sha256_file

REPORT_FILES = ("report.md", "report.json", "pareto.png")


@dataclass(frozen=True)
class ReportConfig:
    """Benchmark and tabulate every exported file of a run."""
    POSITIONAL: ClassVar[str] = "run"   # `python -m pipeline report runs/r1`
    run: str = ""             # run dir (with export/manifest.json) or an export dir
    out: str = ""             # where report.* go; default: the run dir
    threads: int = 1
    runs: int = 50            # timed predictions per file (after warmup)
    warmup: int = 5
    keras: bool = True        # also time the source .keras (reference row, not in the plot)
    verbose: bool = True

    def validate(self) -> None:
        if not self.run:
            raise OptionError("run: give a run dir (python -m pipeline report runs/r1)")
        if self.threads < 1 or self.runs < 1 or self.warmup < 0:
            raise OptionError(f"need threads >= 1, runs >= 1, warmup >= 0 (got threads={self.threads}, "
                              f"runs={self.runs}, warmup={self.warmup})")


def find_export(run: str) -> tuple[Path, Path]:
    """(run dir, export dir) for a run dir or an export dir; OptionError if there is none."""
    path = Path(run).expanduser()
    for export_dir in (path / "export", path):
        if (export_dir / "manifest.json").is_file():
            return (path if export_dir != path else path.parent), export_dir
    raise OptionError(f"run={run}: no export/manifest.json found; run `python -m pipeline export "
                      f"{run}` first")


def cpu_isa() -> str:
    """The vector ISA that decides int8 speed here (serving.machine): e.g. avx512_vnni+avx_vnni+avx2,
    dotprod+i8mm on ARM, or the machine type when none of them is there."""

    info = machine_info()
    have = [f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "avx2", "dotprod", "i8mm") if f in info["isa"]]
    return "+".join(have) or info["arch"]


def variant_label(compression: dict[str, Any] | None) -> str:
    """'source', 'pruned 75%', 'pruned 2:4', 'QAT', 'PQAT 75%' from metrics.json's compress."""
    if not compression:
        return "source"
    method = compression["method"]
    prune = compression.get("prune") or {}
    target = "2:4" if prune.get("structure") == "2:4" else (
        f"{100 * prune['target']:.0f}%" if prune.get("target") else "")
    if method == "prune_qat":
        sparsity = compression.get("sparsity")
        return f"PQAT {100 * sparsity:.0f}%" if sparsity else "PQAT"
    return f"pruned {target}".strip() if method == "prune" else "QAT"


def find_variants(run_dir: Path) -> list[tuple[str, Path, Path]]:
    """(label, run dir, export dir) of exported runs beside run_dir compressed from its model."""

    model = run_dir / "model.keras"
    if not model.is_file():
        return []
    digest, found = sha256_file(model), []
    for metrics in sorted(run_dir.resolve().parent.glob("*/metrics.json")):
        other = metrics.parent
        if other == run_dir.resolve() or not (other / "export" / "manifest.json").is_file():
            continue
        try:
            compression = json.loads(metrics.read_text()).get("compress")
        except (OSError, ValueError):
            continue
        if isinstance(compression, dict) and compression.get("source_sha256") == digest:
            found.append((variant_label(compression), other, other / "export"))
    return found


def pareto_front(rows: list[dict[str, Any]]) -> list[str]:
    """Files no other file beats on both size and p50 latency."""
    return [r["file"] for r in rows
            if not any(o["size_kb"] <= r["size_kb"] and o["p50_ms"] <= r["p50_ms"]
                       and (o["size_kb"], o["p50_ms"]) != (r["size_kb"], r["p50_ms"]) for o in rows)]


def recommend(rows: list[dict[str, Any]], keras_accuracy: float | None, task: Task | None = None
              ) -> dict[str, Any] | None:
    """The file to ship on the machine the report ran on: the lowest p50 latency among the files
    that passed the parity gate and keep close to Keras by the task's measure (Task.close_to_source:
    a classifier loses at most 1 point of accuracy, a detector stays within its gate's mAP drop;
    ties: the smaller file). Chosen from this run's own measurements, so on an AVX2-only CPU (int8
    slower than fp32) and a VNNI one the answer can differ for the same export."""
    task = task or get_task(rows[0].get("task", "classification") if rows else "classification")
    ok = [r for r in rows if r.get("gate_passed") is not False and task.close_to_source(r, keras_accuracy)]
    if not ok:
        return None
    best = min(ok, key=lambda r: (r["p50_ms"], r["size_kb"]))
    fastest = min(rows, key=lambda r: r["p50_ms"])
    why = (f"fastest file that passed the gate {task.recommend_why(best)}: p50 {best['p50_ms']:.3f} ms, "
           f"{best['size_kb']:.1f} KB")
    if fastest is not best:
        why += f" ({fastest['file']} is faster but less accurate or failed the gate)"
    return {"file": best["file"], "format": best["format"], "why": why}


def plot(rows: list[dict[str, Any]], front: list[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    metric, what = get_task(rows[0]["task"] if rows else "classification").plot_metric
    acc = [100 * (r.get(metric) or 0.0) for r in rows]
    pts = ax.scatter([r["size_kb"] for r in rows], [r["p50_ms"] for r in rows], c=acc,
                     cmap="viridis", s=70, edgecolors="black", zorder=3)
    fig.colorbar(pts, ax=ax, label=f"{what} through serving")
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["size_kb"], rows[i]["p50_ms"]))
    for k, i in enumerate(order):   # neighbours alternate above/below so labels do not collide
        r = rows[i]
        name = r["format"] if r.get("variant", "source") == "source" else f"{r['variant']} {r['format']}"
        ax.annotate(f"{name} {acc[i]:.1f}%", (r["size_kb"], r["p50_ms"]), fontsize=7,
                    xytext=(8, 7 if k % 2 == 0 else -12), textcoords="offset points")
    best = sorted((r for r in rows if r["file"] in front), key=lambda r: r["size_kb"])
    ax.step([r["size_kb"] for r in best], [r["p50_ms"] for r in best], where="post",
            color="tab:red", lw=1, ls="--", zorder=2)
    ax.scatter([r["size_kb"] for r in best], [r["p50_ms"] for r in best], s=220, marker="o",
               facecolors="none", edgecolors="tab:red", lw=1.5, zorder=4,
               label="Pareto front: nothing smaller AND faster")
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.2)
    ax.set_xlabel("file size (KB, log scale)")
    ax.set_ylabel("p50 latency (ms, batch 1)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _gate(r: dict[str, Any]) -> str:
    return "-" if r["gate_passed"] is None else ("pass" if r["gate_passed"] else "FAIL")


ACCELERATOR = "GPU delegate / ORT mobile"   # the column of pipeline.export.placement's summary
# (header, right-aligned, cell) per column of the markdown table: these, the task's
# (Task.report_columns), then _LAST
_FIRST = (("variant", False, lambda r: r.get("variant", "source")), ("file", False, lambda r: r["file"]),
          ("format", False, lambda r: r["format"]), ("size KB", True, lambda r: f"{r['size_kb']:.1f}"))
_LAST = (("gate", False, _gate), ("MediaPipe", False, lambda r: r.get("mediapipe") or "-"),
         (ACCELERATOR, False, lambda r: r.get("accelerator") or "-"),
         ("ISA", False, lambda r: r.get("isa", "-")))
def markdown(report: dict[str, Any]) -> str:
    b = report["benchmark"]
    task = get_task(report.get("task", "classification"))
    columns = _FIRST + task.report_columns + _LAST
    lines = [f"# Export report: {report['run']}", "",
             f"Source `{report['source']['model']}` (sha256 `{report['source']['sha256'][:12]}`), "
             f"export folder `{report['export_dir']}`. " + task.report_text.format(**b)
             + f" CPU ISA: {b.get('isa', '-')}.", "",
             "| " + " | ".join(head for head, _, _ in columns) + " |",
             "|" + "|".join("---:" if right else "---" for _, right, _ in columns) + "|"]
    for r in report["rows"] + ([report["keras"]] if report.get("keras") else []):
        lines.append("| " + " | ".join(cell(r) for _, _, cell in columns) + " |")
    lines += ["", f"Pareto front (no other file is both smaller and faster): "
              f"{', '.join(report['pareto_front'])}."]
    rec = report.get("recommended")
    lines += ["", f"**Recommended on this machine: `{rec['file']}`** ({rec['why']})." if rec else
              "No file passed the gate within the accuracy slack: none is recommended."]
    if b.get("machine"):
        lines += ["", f"Measured on {describe(b['machine'])}, int8 dot-product instructions: "
                  f"{'yes' if b['machine'].get('int8_dot_product') else 'no'}; runtimes "
                  + ", ".join(f"{k} {v}" for k, v in b["machine"].get("runtimes", {}).items()) + "."]
    lines += failed_section(report.get("failed") or [])
    lines += report_int8.section(report.get("int8") or [])
    lines += ["", "![size vs latency](pareto.png)", ""]
    return "\n".join(lines)


def failed_section(failed: list[dict[str, Any]]) -> list[str]:
    """report.md's lines on the files the export did not publish (manifest.json's "failed")."""
    if not failed:
        return []
    lines = ["", "## Not published", "",
             "These files failed (their gate, or their conversion) and are not in the export folder:", ""]
    for r in failed:
        repaired = f" Repaired: `{r['repaired_by']}`." if r.get("repaired_by") else ""
        lines.append(f"- `{r['file']}` ({r['format']}): {'; '.join(r['reasons'])}.{repaired}")
    return lines


def report(cfg: ReportConfig) -> dict[str, Any]:
    """Benchmark every file of the run's export and write report.md/json + pareto.png."""
    cfg.validate()
    run_dir, export_dir = find_export(cfg.run)
    manifest = read_manifest(export_dir)
    out = Path(cfg.out).expanduser() if cfg.out else run_dir
    rows, machine, isa = [], None, cpu_isa()
    task = get_task("classification")
    sources = [(variant_label((manifest.get("source") or {}).get("compression")), run_dir, export_dir,
                manifest)]
    sources += [(label, d, e, read_manifest(e)) for label, d, e in find_variants(run_dir)]
    failed = []
    for label, vdir, edir, man in sources:
        failed += [{**f, "variant": label, "run": vdir.name} for f in man.get("failed", [])]
        for art in man["artifacts"]:
            bench = benchmark(edir / art["file"], threads=cfg.threads, runs=cfg.runs,
                              warmup=cfg.warmup, progress=cfg.verbose)     # checks the sha256 too
            task = get_task(bench["task"])   # the file's own contract says what it is
            row = {"variant": label, "run": vdir.name, **task.report_row(art, bench), "isa": isa,
                   # the gate's MediaPipe Tasks verdict (.tflite only): pass | fail: why | n/a: why
                   "mediapipe": (art.get("parity") or {}).get("mediapipe"),
                   # where a phone's accelerator runs it (pipeline.export.placement): information
                   "accelerator": (art.get("accelerator") or {}).get("summary")}
            if edir != export_dir:   # files of another run dir: keep them apart in the table
                row["file"] = f"{vdir.name}/export/{art['file']}"
            rows.append(row)
            machine = bench["machine"]
    keras_row = None
    keras_acc = task.keras_accuracy(rows)
    source_model = run_dir / manifest["source"].get("model", "model.keras")
    if cfg.keras and source_model.is_file():
        bench = benchmark(source_model, runs=max(1, cfg.runs // 5), warmup=min(cfg.warmup, 2),
                          manifest=None, progress=cfg.verbose)
        row = task.report_row({"file": source_model.name, "format": "keras",
                               "size_bytes": source_model.stat().st_size}, bench)
        # Keras' own quality figures, as the gate measured them beside the files
        keras_row = {"variant": sources[0][0], **task.keras_row(row, rows), "isa": isa}
    metrics = run_dir / "metrics.json"
    front = pareto_front(rows)
    result = {"run": str(run_dir), "task": task.name, "export_dir": str(export_dir),
              "source": manifest["source"],
              "benchmark": {"threads": cfg.threads, "runs": cfg.runs, "warmup": cfg.warmup,
                            "batch": 1, "machine": machine, "isa": isa},
              "variants": [{"variant": label, "run": str(d)} for label, d, _, _ in sources],
              "training_metrics": json.loads(metrics.read_text()) if metrics.is_file() else None,
              "rows": rows, "keras": keras_row, "pareto_front": front, "failed": failed,
              "int8": report_int8.diagnosed([(label, man) for label, _, _, man in sources]),
              "recommended": recommend(rows, keras_acc, task)}
    write_json(out / "report.json", result)
    write_text(out / "report.md", markdown(result))
    plot(rows, front, out / "pareto.png", f"{run_dir.name}: exported variants "
         f"({cfg.threads} thread{'s' if cfg.threads > 1 else ''})")
    report_int8.plot(result["int8"], out / report_int8.PLOT)
    if cfg.verbose:
        print(markdown(result))
        print(f"wrote {', '.join(REPORT_FILES)} to {out}")
    return result
