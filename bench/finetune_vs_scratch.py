"""Fine-tuning vs training from scratch (d2l 14.2's claim), measured on generated shapes.

    python bench/finetune_vs_scratch.py [--source-per-class 1000] [--target-per-class 100] [--epochs 12]

Source: 6 classes (circle ... ring) with many images, trained from scratch. Target: the 6 OTHER
classes (hexagon ... frame) with about 50 training images per class. On the target, the same
architecture is (a) fine-tuned from the source model (pipeline.finetune: new head, one head-only
epoch, then the backbone at lr x 0.1) and (b) trained from scratch, with the same number of
epochs. Prints a table and the epochs fine-tuning needed to reach scratch's final accuracy,
plots both validation curves (bench/results/finetune_vs_scratch.png), writes JSON; the LAST line
printed is `finetuned=<val acc> scratch=<val acc>`.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.atomic import atomic_path, write_json  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from serving.machine import measured_on  # noqa: E402

SOURCE = "circle,square,triangle,star,cross,ring"
TARGET = "hexagon,crescent,arrow,heart,semicircle,frame"


def val_curve(run_dir: Path) -> list[float]:
    with open(run_dir / "logs" / "train.csv") as f:
        return [float(row["val_accuracy"]) for row in csv.DictReader(f)]


def plot(curves: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=name)
    ax.set(xlabel="epoch on the target data", ylabel="validation accuracy", title=title, ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--source-per-class", type=int, default=1000)
    ap.add_argument("--source-epochs", type=int, default=10)
    ap.add_argument("--target-per-class", type=int, default=100, help="train ~50%%, val 40%%, test 10%%")
    ap.add_argument("--epochs", type=int, default=12, help="epochs on the target, both runs")
    ap.add_argument("--out", default="bench/results/finetune_vs_scratch")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from pipeline.finetune import FinetuneConfig, finetune
    from pipeline.train import TrainConfig, train

    out = Path(args.out)
    model = [f"model={args.model}", f"model.width={args.width}"]
    common = ["augment=standard", "optimizer=adamw", "weight_decay=0.0005", "verbose=2",
              "overwrite=true", f"seed={args.seed}"]
    target = ["data=shapes", f"data.shapes.names={TARGET}",
              f"data.shapes.per_class={args.target_per_class}", "data.val_split=0.4",
              "data.test_split=0.1", f"epochs={args.epochs}", "batch_size=32"]
    t0 = time.perf_counter()
    source_dir = out / "source"
    if not (source_dir / "metrics.json").is_file():
        train(load_config(TrainConfig, model + common + [
            "data=shapes", f"data.shapes.names={SOURCE}", f"data.shapes.per_class={args.source_per_class}",
            f"epochs={args.source_epochs}", "lr=0.003", f"out={source_dir}"]))
    t_source = time.perf_counter() - t0
    ft = finetune(load_config(FinetuneConfig, common + target + [
        f"from={source_dir}", "lr=0.002", "head_epochs=1", "backbone_lr_mult=0.1",
        f"out={out / 'finetuned'}"]))
    scratch = train(load_config(TrainConfig, model + common + target + [
        "lr=0.003", f"out={out / 'scratch'}"]))

    curves = {"fine-tuned": val_curve(ft.run_dir), "from scratch": val_curve(scratch.run_dir)}
    final_s = curves["from scratch"][-1]
    reach = next((i + 1 for i, v in enumerate(curves["fine-tuned"]) if v >= final_s), None)
    plot(curves, out.with_suffix(".png"), f"{args.model} w{args.width:g}: 6 new shape classes, "
         f"~{args.target_per_class // 2} train images each")
    rows = {"fine-tuned": ft.metrics, "from scratch": scratch.metrics}
    print(f"\n{'run':<14}{'best val':>10}{'final val':>11}{'test':>8}{'train s':>9}")
    for name, m in rows.items():
        print(f"{name:<14}{m['val_accuracy']:>10.3f}{curves[name][-1]:>11.3f}{m['test_accuracy']:>8.3f}"
              f"{m['train_seconds']:>9.1f}")
    print(f"source model: {args.model} w{args.width:g} on {SOURCE} ({args.source_per_class}/class), "
          f"{t_source:.0f}s incl. data")
    print(f"fine-tuning reached scratch's final val accuracy ({final_s:.3f}) at epoch "
          f"{reach if reach else 'never'} of {args.epochs}")
    write_json(out.with_suffix(".json"), {
        "args": vars(args), "machine": measured_on(), "curves": curves,
        "epochs_to_reach_scratch_final": reach,
        "finetuned": {k: ft.metrics[k] for k in ("val_accuracy", "test_accuracy", "train_seconds")},
        "scratch": {k: scratch.metrics[k] for k in ("val_accuracy", "test_accuracy", "train_seconds")}})
    print(f"finetuned={ft.metrics['val_accuracy']:.4f} scratch={scratch.metrics['val_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
