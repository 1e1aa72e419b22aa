"""SSD (Liu et al. 2016; d2l 14.7) on `shapes_det` at 128x128, trained from scratch through
`pipeline.train` (task=detection) on several backbones: train time, mAP@.5 and mAP@[.5:.95] on
the held-out test split (pycocotools), parameters, FLOPs and anchors per image.

    python bench/detection.py [--epochs 30] [--images 1500] [--size 128]
        [--config resnet18:width=0.25 --config mobilenetv3_small:width=0.5,head=ssdlite]
        [--out bench/results/detection.json]

Prints a markdown table, writes JSON and a PNG (val mAP per epoch, one line per backbone).
The issue's goal: a <= 3 M parameter detector trained in <= 5 minutes on this 2-core CPU
reaching mAP@.5 >= 0.95 and mAP@[.5:.95] >= 0.70.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.atomic import write_json  # noqa: E402
from models.options import parse_value  # noqa: E402

DEFAULT_CONFIGS = ("resnet18:width=0.25", "mobilenetv3_small:width=0.5,head=ssdlite")


def parse_config(text: str) -> tuple[str, dict]:
    """'resnet18:width=0.25,head=ssdlite' -> ('resnet18', {'width': 0.25, 'head': 'ssdlite'})."""
    backbone, _, rest = text.partition(":")
    opts = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        opts[key] = parse_value(value)
    return backbone, opts


def run_one(backbone: str, opts: dict, args: argparse.Namespace, out_dir: Path) -> dict:
    from models.summary import stage_table
    from pipeline.config import load_config
    from pipeline.train import TrainConfig, train

    overrides = [
        "task=detection", "data=shapes_det", f"data.shapes_det.images={args.images}",
        f"data.shapes_det.size={args.size}", "model=ssd", f"model.backbone={backbone}",
        f"epochs={args.epochs}", f"batch_size={args.batch}", f"lr={args.lr}", "weight_decay=0.0005",
        f"augment={args.augment}", f"seed={args.seed}", "verbose=2", "overwrite=true",
        f"out={out_dir}", *(f"model.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                           for k, v in opts.items())]
    result = train(load_config(TrainConfig, overrides))
    m = result.metrics
    macs = sum(s.macs for s in stage_table(result.model))
    with open(result.run_dir / "logs" / "train.csv") as f:
        curve = [float(r["val_map"]) for r in csv.DictReader(f)]
    name = f"ssd/{backbone}" + "".join(f" {k}={v}" for k, v in opts.items())
    return {"model": name, "backbone": backbone, "options": opts, "params": m["params"],
            "mflops": round(2 * macs / 1e6, 1), "anchors": m["num_anchors"],
            "epochs": m["epochs_run"], "train_seconds": round(m["train_seconds"], 1),
            "wall_seconds": round(m["wall_seconds"], 1), "test_map50": round(m["test_map50"], 4),
            "test_map": round(m["test_map"], 4), "test_ar100": round(m["test_ar100"], 4),
            "val_map": round(m["val_map"], 4), "train_map": round(m["train_map"], 4),
            "per_class_ap50": {k: round(v, 4) for k, v in m["per_class_ap50"].items()},
            "val_map_curve": curve,
            "goal_met": bool(m["params"] <= 3e6 and m["train_seconds"] <= 300 and m["test_map50"] >= 0.95
                             and m["test_map"] >= 0.70)}


def table(rows: list[dict]) -> str:
    lines = ["| model | params | MFLOPs | anchors | epochs | train s | mAP@.5 | mAP@[.5:.95] | AR@100 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['params']:,} | {r['mflops']} | {r['anchors']:,} | {r['epochs']} | "
              f"{r['train_seconds']} | {r['test_map50']:.3f} | {r['test_map']:.3f} | {r['test_ar100']:.3f} |"
              for r in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    from pipeline.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in rows:
        ax.plot(range(1, len(r["val_map_curve"]) + 1), r["val_map_curve"], marker=".",
                label=f"{r['model']} (test mAP@.5 {r['test_map50']:.3f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mAP@[.5:.95]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("SSD on shapes_det 128x128, from scratch", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="BACKBONE[:opt=value,...] (repeatable)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--images", type=int, default=1500)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--augment", default="ssd")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/detection.json")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(args.config or DEFAULT_CONFIGS):
            backbone, opts = parse_config(text)
            rows.append(run_one(backbone, opts, args, Path(tmp) / f"run{i}"))
            print(table(rows[-1:]), flush=True)
    out = Path(args.out)
    write_json(out, {"settings": vars(args), "rows": rows,
                     "note": "one run each, on a 2-core CPU that may be shared with other jobs"})
    plot(rows, out.with_suffix(".png"))
    print(table(rows))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
