"""SSD vs YOLO side by side (models.detector, models.yolo), trained from scratch through
`pipeline.train` (task=detection) on two data sets, several seeds each:

- `shapes_det`: the built-in generated scenes (1,500 at 128 px; the main job's detector data);
- a YOLO-format folder written by `python -m pipeline make-shapes task=detection format=yolo`
  (other scenes: its own seed and object sizes), read back as a user's folder would be.

    python bench/detection.py                         # 2 detectors x 2 data sets x 3 seeds
    python bench/detection.py --seeds 0 --epochs 1 --images 60 --size 64 --latency-runs 20  # smoke

Per run: wall time of the whole `train()` call (data, fit, per-epoch validation, final
evaluation: what a user waits for), test mAP@.5 and mAP@[.5:.95] (pycocotools), parameters,
FLOPs, and the tflite_int8 file's p50 latency (LiteRT through serving's backend, batch 1, 1
thread, decoding + NMS inside) with its mAP. Prints a markdown table (mean ± spread over the
seeds), writes JSON and a PNG (mAP@[.5:.95] vs wall time, one point per run). Each detector
trains with the settings in DETECTORS and EPOCHS: the main job's, the SSD's until now and the
YOLO's now (about the same wall time).
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

COMMON = ["optimizer=adamw", "weight_decay=0.0005", "schedule.name=cosine", "schedule.warmup_epochs=1",
          "augment=light"]
DETECTORS = {
    "ssd": ["model=ssd", "model.backbone=resnet18", "model.width=0.25", "batch_size=8", "lr=0.006"],
    "yolo": ["model=yolo", "model.backbone=resnet18", "model.width=0.25", "batch_size=16", "lr=0.01",
             "detection.cls_weight=1.0"],
}
EPOCHS = {"ssd": 12, "yolo": 16}   # the main job's: about the same wall time (see README, Detection)
FOLDER_SEED = 100   # the YOLO folder's scenes are not shapes_det's
# the int8 file is measured whatever it scores: the gate's bars opened (its numbers still recorded);
# a seed-2 yolo's int8 boxes were reproduced by MediaPipe at 0.949 < 0.95 and stopped the bench
OPEN_GATE = ["gate.det_max_drop_int8=1", "gate.mediapipe_int8=0"]


def write_folder(root: Path, images: int, size: int) -> Path:
    """The YOLO-format folder, through the CLI's own make-shapes."""
    from pipeline.config import load_config
    from pipeline.make_shapes import MakeShapesConfig, make_shapes

    return make_shapes(load_config(MakeShapesConfig, [
        "task=detection", "format=yolo", f"out={root / 'shapes_yolo'}", f"seed={FOLDER_SEED}",
        f"shapes_det.images={images}", f"shapes_det.size={size}", "shapes_det.object_size=0.08,0.4"]))


def p50_ms(path: Path, image: np.ndarray, runs: int) -> float:
    """LiteRT invoke + outputs of one image through serving's backend, 1 thread: p50 in ms."""
    import serving
    from serving import preprocess

    runner = serving.load(path, manifest="auto", threads=1)
    x = preprocess.to_input(image[None], runner.contract, runner.input)
    for _ in range(10):
        runner.backend.run_all(x)
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        runner.backend.run_all(x)
        ms.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ms))


def run_one(detector: str, data: list[str], seed: int, args: argparse.Namespace, out: Path) -> dict:
    from models.summary import stage_table
    from pipeline.config import load_config
    from pipeline.export import ExportConfig, export
    from pipeline.train import TrainConfig, train

    size = f"model.input_shape={args.size},{args.size},3"   # both data sets at their native size
    cfg = load_config(TrainConfig, ["task=detection", *data, size, *COMMON, *DETECTORS[detector],
                                    f"epochs={args.epochs or EPOCHS[detector]}", f"seed={seed}", "verbose=0",
                                    "overwrite=true", f"out={out}", *args.set])
    t = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t
    m = result.metrics
    row = {"detector": detector, "seed": seed, "params": m["params"],
           "mflops": round(2 * sum(s.macs for s in stage_table(result.model)) / 1e6, 1),
           "anchors": m["num_anchors"], "epochs": m["epochs_run"], "wall_seconds": round(wall, 1),
           "test_map50": round(m["test_map50"], 4), "test_map": round(m["test_map"], 4),
           "test_ar100": round(m["test_ar100"], 4)}
    if args.latency_runs:   # the int8 file, its gate numbers recorded (the gate opened, not skipped)
        exported = export(load_config(ExportConfig, [
            f"model={result.run_dir}", "formats=tflite_int8", "verbose=false", *OPEN_GATE]))
        art = exported.artifacts[0]
        parity = art["parity"]
        image = np.random.default_rng(seed).integers(0, 256, (*m["input_shape"][:2], 3), dtype=np.uint8)
        row.update({"int8_p50_ms": round(p50_ms(exported.out_dir / art["file"], image, args.latency_runs), 3),
                    "int8_map50": round(parity["map50"], 4), "int8_map": round(parity["map"], 4),
                    "int8_map_drop": round(parity["map_drop"], 4)})
    return row


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for key in sorted({(r["data"], r["detector"]) for r in rows}):
        rs = [r for r in rows if (r["data"], r["detector"]) == key]
        agg = {"data": key[0], "detector": key[1], "seeds": len(rs), "params": rs[0]["params"],
               "mflops": rs[0]["mflops"], "anchors": rs[0]["anchors"]}
        for k in ("test_map50", "test_map", "wall_seconds", "int8_p50_ms", "int8_map50", "int8_map"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            if vals:
                agg[k], agg[f"{k}_sd"] = float(np.mean(vals)), float(np.std(vals))
        out.append(agg)
    return out


def table(summary: list[dict]) -> str:
    def pm(r, k, spec):
        return "-" if k not in r else f"{r[k]:{spec}} ± {r[f'{k}_sd']:{spec}}"

    lines = ["| data | detector | params | MFLOPs | anchors | seeds | mAP@.5 | mAP@[.5:.95] | wall s "
             "| int8 mAP@.5 | int8 mAP | int8 p50 ms |",
             "|---|---|---:|---:|---:|---:|---|---|---|---|---|---|"]
    lines += [f"| {r['data']} | {r['detector']} | {r['params']:,} | {r['mflops']} | {r['anchors']:,} | "
              f"{r['seeds']} | {pm(r, 'test_map50', '.3f')} | {pm(r, 'test_map', '.3f')} | "
              f"{pm(r, 'wall_seconds', '.0f')} | {pm(r, 'int8_map50', '.3f')} | {pm(r, 'int8_map', '.3f')} | "
              f"{pm(r, 'int8_p50_ms', '.2f')} |" for r in summary]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    from pipeline.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    keys = sorted({(r["data"], r["detector"]) for r in rows})
    for i, (data, det) in enumerate(keys):
        rs = [r for r in rows if (r["data"], r["detector"]) == (data, det)]
        ax.scatter([r["wall_seconds"] for r in rs], [r["test_map"] for r in rs],
                   marker="^" if det == "yolo" else "o", color=f"C{i}", label=f"{det} on {data}")
    ax.set_xlabel("wall seconds (train + validation + evaluation)")
    ax.set_ylabel("test mAP@[.5:.95]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def resumed(out: Path, args) -> list[dict]:
    """The rows of a partial run at `out` made with these settings (the others may differ: seeds
    are matched row by row), or none."""
    import json

    if not out.is_file():
        return []
    old = json.loads(out.read_text())
    settings = {**old["settings"], "detectors": ",".join(old["settings"]["detectors"])}   # saved as a table
    same = ("detectors", "data", "epochs", "images", "size", "latency_runs", "set")
    if not old.get("partial") or any(settings.get(k) != vars(args)[k] for k in same):
        raise SystemExit(f"{out}: not a partial run with these settings; --resume needs one (or drop it)")
    print(f"resuming: {len(old['rows'])} runs kept from {out}", flush=True)
    return old["rows"]


def save(out: Path, args, rows: list[dict], partial: bool) -> list[dict]:
    """Write the rows so far (partial: the run is still going) and their summary; returns it."""
    from serving.machine import describe

    summary = summarise(rows)
    write_json(out, {"settings": {**vars(args), "common": COMMON,
                                  "detectors": {k: DETECTORS[k] for k in args.detectors.split(",")}},
                     "machine": describe(), "summary": summary, "rows": rows, "partial": partial,
                     "note": "wall times on a 2-core CPU that may be shared with other jobs "
                             "(each row's load_avg_1m is the 1-minute load average as it ended)"})
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detectors", default="ssd,yolo")
    p.add_argument("--data", default="shapes_det,yolo_folder", help="shapes_det and/or yolo_folder")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=0, help="0: each detector's main-job epochs (EPOCHS)")
    p.add_argument("--images", type=int, default=1500)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--latency-runs", type=int, default=300, help="0: no int8 export or timing")
    p.add_argument("--set", action="append", default=[], help="extra key=value for every run")
    p.add_argument("--out", default="bench/results/detection.json")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of a partial --out written with the same settings; run the rest")
    args = p.parse_args(argv)
    rows = resumed(Path(args.out), args) if args.resume else []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"shapes_det": ["data=shapes_det", f"data.shapes_det.images={args.images}",
                                  f"data.shapes_det.size={args.size}"]}
        if "yolo_folder" in args.data:
            sources["yolo_folder"] = [f"data={write_folder(Path(tmp), args.images, args.size)}"]
        for data in args.data.split(","):
            for det in args.detectors.split(","):
                for seed in map(int, args.seeds.split(",")):
                    if any((r["data"], r["detector"], r["seed"]) == (data, det, seed) for r in rows):
                        continue   # --resume: measured already
                    run = run_one(det, sources[data], seed, args, Path(tmp) / f"{data}-{det}-{seed}")
                    rows.append({"data": data, **run, "load_avg_1m": round(os.getloadavg()[0], 2)})
                    save(Path(args.out), args, rows, partial=True)   # a stopped run keeps its rows
                    print({k: rows[-1][k] for k in ("data", "detector", "seed", "test_map50", "test_map",
                                                    "wall_seconds")}, flush=True)
    summary = save(Path(args.out), args, rows, partial=False)
    out = Path(args.out)
    epochs = args.epochs or ", ".join(f"{k} {v}" for k, v in EPOCHS.items())
    plot(rows, out.with_suffix(".png"), f"SSD vs YOLO from scratch, {args.size} px, epochs: {epochs}")
    print(table(summary))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
