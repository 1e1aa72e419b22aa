"""Serving overhead benchmark: end-to-end `Runner.predict` vs the raw backend invoke, per file.

    python bench/serving_overhead.py source=export/ [runs=300] [warmup=30] [batch=1] [threads=1]
        [out=bench/results/serving_overhead]

`source` is a model file or a folder (every .tflite/.onnx/.keras in it). Files run one at a
time through serving.benchmark.run (same loop, same random pixels). Prints a table, writes
<out>.json (config + results) and <out>.png (p50 end-to-end and raw invoke latency per file).
Note: peak RSS is the process's, so it grows with every file loaded before (and with Keras).
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere in the repo

from models.atomic import atomic_path, write_json  # noqa: E402
from models.options import OptionError, parse_kv, replace_checked  # noqa: E402
from serving.backends import BACKENDS  # noqa: E402
from serving.benchmark import format_table, run  # noqa: E402
from serving.machine import measured_on  # noqa: E402


@dataclass
class Config:
    source: str = ""
    runs: int = 300
    warmup: int = 30
    batch: int = 1
    threads: int | None = None
    out: str = "bench/results/serving_overhead"


def model_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in BACKENDS)
    elif path.is_file():
        files = [path]
    else:
        raise OptionError(f"source={source}: no such file or folder")
    if not files:
        raise OptionError(f"source={source}: no {', '.join(BACKENDS)} files in it")
    # Keras last: importing TensorFlow would inflate every later file's peak RSS
    return sorted(files, key=lambda p: p.suffix == ".keras")


def plot(results: list[dict], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [Path(r["model"]).name for r in results]
    e2e = [r["latency_ms"]["p50"] for r in results]
    raw = [r["invoke_ms"]["p50"] for r in results]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.5))
    ax.barh(y - 0.2, e2e, 0.4, label="predict (end to end)")
    ax.barh(y + 0.2, raw, 0.4, label="raw backend invoke")
    for i, r in enumerate(results):
        ax.text(e2e[i], y[i] - 0.2, f" overhead {r['overhead_pct']:.0f}% (mean)", va="center",
                fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    if max(e2e) > 20 * min(raw):   # e.g. Keras next to TFLite: keep the small bars readable
        ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency, ms (batch {results[0]['batch']})")
    ax.set_title("Serving overhead per model file")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(names)), ncol=2)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    try:
        cfg = replace_checked(Config(), parse_kv(argv), "option")
        files = model_files(cfg.source)
        results = [run(f, runs=cfg.runs, warmup=cfg.warmup, batch=cfg.batch, threads=cfg.threads)
                   for f in files]
    except (OptionError, ValueError) as e:   # ArtifactError/ImageError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    out = Path(cfg.out)
    write_json(out.with_suffix(".json"),
               {"config": asdict(cfg), "machine": measured_on(), "results": results})
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
