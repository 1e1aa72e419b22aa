"""Latency/throughput benchmark of one model file through the serving runtime.

Each timed run is one `Runner.predict` on a fixed batch of random pixels (end to end:
quantize, invoke, dequantize, softmax), or for a detector one `Runner.detect_batch` (end to end:
preprocess, invoke with the file's own decoding + NMS, reading the four outputs; a .keras
detector's decoding + NMS run in numpy); the same loop records the time spent inside the
library's own invoke call (`Backend.last_invoke_s`), so the serving overhead - end-to-end
minus raw invoke - is reported in ms and as a percent of end-to-end. Also: load time, file
size and the process's peak RSS (resource.getrusage; it includes whatever the process had
loaded before, e.g. TensorFlow in a test run).
"""
from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.options import OptionError
from serving.machine import describe, machine_info
from serving.runtime import load


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)),
            "p90": float(np.percentile(ms, 90)), "p99": float(np.percentile(ms, 99)),
            "min": float(ms.min()), "max": float(ms.max())}


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def run(path: str | os.PathLike, *, threads: int | None = None, runs: int = 100, warmup: int = 10,
        batch: int = 1, manifest: str | os.PathLike | None = "auto", seed: int = 0,
        progress: bool = True, kernels: str | None = None) -> dict[str, Any]:
    """Benchmark `path`; returns a JSON-ready dict (see module docstring for the fields).
    kernels: LiteRT's op resolver for a .tflite file (serving.load); None = its default, XNNPACK."""
    from tqdm import tqdm

    if runs < 1 or warmup < 0 or batch < 1:
        raise OptionError(f"need runs >= 1, warmup >= 0, batch >= 1 (got runs={runs}, "
                          f"warmup={warmup}, batch={batch})")
    if threads is not None and threads < 1:
        raise OptionError(f"threads must be >= 1, got {threads}")
    path = Path(path)
    t0 = time.perf_counter()
    runner = load(path, manifest=manifest, threads=threads, kernels=kernels)
    load_ms = (time.perf_counter() - t0) * 1e3
    images = np.random.default_rng(seed).integers(0, 256, (batch, *runner.contract.input_shape),
                                                  dtype=np.uint8)   # (batch, H, W, C)
    step = runner.run_batch
    for _ in range(warmup):
        step(images)
    e2e, invoke = [], []
    for _ in tqdm(range(runs), desc=f"benchmark {path.name}", disable=not progress, leave=False):
        t = time.perf_counter()
        step(images)
        e2e.append(time.perf_counter() - t)
        invoke.append(runner.backend.last_invoke_s)
    latency, raw = _stats(e2e), _stats(invoke)
    overhead_ms = latency["mean"] - raw["mean"]
    return {
        "model": str(path), "format": runner.format, "backend": runner.backend.name,
        "kernels": getattr(runner.backend, "kernels", None),
        "task": runner.contract.task,
        "input_dtype": runner.input.dtype, "file_size_bytes": path.stat().st_size,
        "threads": runner.backend.threads, "batch": batch, "runs": runs, "warmup": warmup,
        "load_ms": load_ms, "latency_ms": latency, "invoke_ms": raw,
        "overhead_ms": overhead_ms, "overhead_pct": 100.0 * overhead_ms / latency["mean"],
        "throughput_ips": batch * runs / sum(e2e), "peak_rss_mb": _peak_rss_mb(),
        "machine": machine_info(),
    }


def format_table(results: list[dict[str, Any]]) -> str:
    """Rows of benchmark results -> a fixed-width text table."""
    head = ("file", "backend", "in", "thr", "batch", "size KB", "p50 ms", "p90 ms", "p99 ms",
            "mean ms", "invoke ms", "overhead", "img/s", "RSS MB")
    rows = [head]
    for r in results:
        lat = r["latency_ms"]
        backend = r["backend"] + (f" ({r['kernels']})" if r.get("kernels") not in (None, "xnnpack") else "")
        rows.append((Path(r["model"]).name, backend, r["input_dtype"], str(r["threads"] or "-"),
                     str(r["batch"]), f"{r['file_size_bytes'] / 1024:.1f}", f"{lat['p50']:.3f}",
                     f"{lat['p90']:.3f}", f"{lat['p99']:.3f}", f"{lat['mean']:.3f}",
                     f"{r['invoke_ms']['mean']:.3f}", f"{r['overhead_pct']:.1f}%",
                     f"{r['throughput_ips']:.1f}", f"{r['peak_rss_mb']:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    table = "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])
    machines = {describe(r["machine"]) for r in results if r.get("machine")}
    return "\n".join([table, *(f"measured on {m}" for m in sorted(machines))])
