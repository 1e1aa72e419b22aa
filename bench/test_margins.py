"""The tests' bars on freshly trained models, next to the spread measured over seeds and CPU kernels.

    python bench/test_margins.py [--seeds 0,1,2] [--isas native,avx2] [--files tests/test_serving.py,...]
        [--out bench/results/test_margins.json]

Every test that asserts a threshold on a freshly trained model's output (or on a file converted
from one) states it through tests/margins.py (at_least / at_most / gate_passed) and trains with
margins.seed(). This runs those test files (every file under tests/ that imports `margins`;
tests/edge in the edge venv when there is one) once per seed x ISA:
- seed: CNN_TEST_SEED moves every such training seed;
- isa: "native" is this CPU's own oneDNN kernels (AVX-512/AMX here), "avx2" caps oneDNN at AVX2
  and turns its TF optimisations off (ONEDNN_MAX_CPU_ISA=AVX2 TF_ENABLE_ONEDNN_OPTS=0), as an
  AVX2-only AMD CPU computes.
Each check's values land in CNN_MARGINS_OUT; the table gives, per check: its bar, the worst and
best value over all runs, the spread (best - worst) and the headroom (worst value's distance to
the bar). A check is "ok" when its headroom is at least twice its spread, "tight" when it passes
everywhere with less, "FAILED" when a run crossed the bar. Prints the table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.atomic import write_json  # noqa: E402
from serving.machine import describe  # noqa: E402

ISAS = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "0"}}


def margin_files() -> list[Path]:
    """The test files that state a bar through tests/margins.py."""
    return sorted(p for p in (ROOT / "tests").rglob("test_*.py") if "from margins import" in p.read_text())


def read_log(path: Path) -> list[dict]:
    """The rows a CNN_MARGINS_OUT file holds (none when the run wrote none)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_once(files: list[Path], seed: int, isa: str, log: Path) -> dict:
    """One pytest run of `files` (not slow) at `seed` under `isa`: {seconds, rc, rows}."""
    env = {**os.environ, **ISAS[isa], "CNN_TEST_SEED": str(seed), "CNN_MARGINS_OUT": str(log),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    if isa == "native":
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    full = [f for f in files if "edge" not in f.parts]
    edge = [f for f in files if "edge" in f.parts]
    start, rc = time.time(), 0
    cmds = [[sys.executable, "-m", "pytest", "-m", "not slow", "-q", "-p", "no:cacheprovider",
             *map(str, full)]]
    edge_python = ROOT / ".venv-edge" / "bin" / "python"
    if edge and edge_python.exists():
        cmds.append([str(edge_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, edge)])
        env["FULL_PYTHON"] = sys.executable
    for cmd in cmds:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        rc = rc or r.returncode
        tail = r.stdout.strip().splitlines()[-1:] or [""]
        print(f"  seed {seed} {isa:6s} {Path(cmd[0]).parent.parent.name}: {tail[0]}", flush=True)
    return {"seed": seed, "isa": isa, "seconds": round(time.time() - start, 1), "rc": rc,
            "rows": read_log(log)}


def summarize(runs: list[dict]) -> list[dict]:
    """One row per (test, check): bar, worst/best value, spread, headroom, verdict."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        for row in run["rows"]:
            groups[(row["test"], row["check"])].append(row)
    table = []
    for (test, check), rows in sorted(groups.items()):
        op, bar = rows[0]["op"], rows[0]["bar"]
        values = [r["value"] for r in rows]
        worst = min(values) if op == ">=" else max(values)
        best = max(values) if op == ">=" else min(values)
        headroom = (worst - bar) if op == ">=" else (bar - worst)
        spread = abs(best - worst)
        verdict = "FAILED" if headroom < 0 else ("ok" if headroom >= 2 * spread else "tight")
        table.append({"test": test, "check": check, "op": op, "bar": bar, "runs": len(rows),
                      "worst": worst, "best": best, "spread": spread, "headroom": headroom,
                      "verdict": verdict, "by_run": {f"{r['seed']}/{r['isa']}": r["value"] for r in rows}})
    return table


def print_table(table: list[dict]) -> None:
    print(f"\n{'test / check':86s} {'bar':>9s} {'runs':>4s} {'worst':>8s} {'best':>8s} "
          f"{'spread':>8s} {'headroom':>8s}  verdict")
    for t in table:
        name = f"{t['test'].split('::', 1)[-1][:44]} / {t['check']}"[:86]
        print(f"{name:86s} {t['op']}{t['bar']:<7.4g} {t['runs']:4d} {t['worst']:8.4f} {t['best']:8.4f} "
              f"{t['spread']:8.4f} {t['headroom']:8.4f}  {t['verdict']}")
    counts = defaultdict(int)
    for t in table:
        counts[t["verdict"]] += 1
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="CNN_TEST_SEED values (default 0,1,2)")
    ap.add_argument("--isas", default="native,avx2", help=f"oneDNN kernel settings: {', '.join(ISAS)}")
    ap.add_argument("--files", default="",
                    help="comma-separated test files (default: every one that imports margins)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "test_margins.json"))
    ap.add_argument("--merge", default="", help="earlier JSON outputs whose runs are added to this one's")
    ap.add_argument("--logs", default="",
                    help="CNN_MARGINS_OUT files of other runs (`make test`) to add, a run per seed/ISA")
    args = ap.parse_args()
    files = [ROOT / f for f in args.files.split(",") if f] or margin_files()
    isas = [i for i in args.isas.split(",") if i]
    for isa in isas:
        if isa not in ISAS:
            ap.error(f"--isas: unknown {isa!r} (known: {', '.join(ISAS)})")
    print(f"{len(files)} test files: {', '.join(str(f.relative_to(ROOT)) for f in files)}")
    runs = []
    for path in filter(None, args.merge.split(",")):
        runs += json.loads(Path(path).read_text())["runs"]
    for path in filter(None, args.logs.split(",")):
        rows = read_log(Path(path))
        for key in sorted({(r["seed"], r["isa"]) for r in rows}):
            runs.append({"seed": key[0], "isa": "native" if key[1] == "native" else "avx2",
                         "seconds": None, "rc": 0, "source": str(path),
                         "rows": [r for r in rows if (r["seed"], r["isa"]) == key]})
    with tempfile.TemporaryDirectory(prefix="cnn-margins-") as tmp:
        for seed in [int(s) for s in args.seeds.split(",") if s.strip() not in ("", "none")]:
            for isa in isas:
                runs.append(run_once(files, seed, isa, Path(tmp) / f"{seed}-{isa}.jsonl"))
    table = summarize(runs)
    print_table(table)
    write_json(Path(args.out), {"machine": describe(), "files": [str(f.relative_to(ROOT)) for f in files],
                                "runs": runs, "table": table})
    print(f"wrote {args.out}")
    return 1 if any(t["verdict"] == "FAILED" for t in table) or any(r["rc"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
