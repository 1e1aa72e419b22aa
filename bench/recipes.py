"""The default recipe (model=auto, pipeline.recipes) on three data sets, next to two
scikit-learn floors a CNN must beat: a random forest and a logistic regression on colour
histograms (8 bins per channel, 512 features).

    python bench/recipes.py [--datasets real_photos,digits,shapes] [--photos data/real_photos]
        [--out bench/results/recipes.json]

real_photos is bench/real_photos.py's check (written first when missing). Each training is
`python -m pipeline train data=... out=...` with nothing else set, timed as a whole process
(start-up and data loading included). For real_photos the trained model is also evaluated with
test-time augmentation (serving, tta=flip and flip_crop) on the test split. Prints a table and
writes JSON + PNG. Goals (issue 13): default recipe >= 0.90 test accuracy on real_photos in
<= 5 minutes, and >= 5 points above both floors.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from models.atomic import atomic_path, write_json  # noqa: E402
from serving.machine import describe, measured_on  # noqa: E402

GOAL = {"real_photos_accuracy": 0.90, "real_photos_seconds": 300, "margin_over_floors": 0.05}


def histograms(images: np.ndarray, bins: int = 8) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, bins**3) normalised joint colour histograms (grey: bins)."""
    q = (images.astype(np.int32) * bins) // 256
    if images.shape[-1] == 1:
        idx, size = q[..., 0], bins
    else:
        idx, size = q[..., 0] * bins * bins + q[..., 1] * bins + q[..., 2], bins ** 3
    flat = idx.reshape(len(images), -1)
    out = np.zeros((len(images), size), np.float32)
    for i, row in enumerate(flat):
        out[i] = np.bincount(row, minlength=size)
    return out / flat.shape[1]


def floors(source: str, seed: int = 0) -> dict[str, float]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from pipeline.config import load_config
    from pipeline.data import DataConfig, load_dataset, natural_input_shape

    data_cfg = load_config(DataConfig, {"source": source})
    h, w, c = natural_input_shape(data_cfg) if source in ("digits", "shapes") else (64, 64, 3)
    ds = load_dataset(data_cfg, image_size=(h, w), channels=c)
    xtr, xte = histograms(ds.train.images), histograms(ds.test.images)
    rf = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1).fit(xtr, ds.train.labels)
    lr = LogisticRegression(max_iter=3000, C=10.0).fit(xtr, ds.train.labels)
    return {"random_forest_hist": float(rf.score(xte, ds.test.labels)),
            "logistic_hist": float(lr.score(xte, ds.test.labels))}


def train_default(source: str, out: Path) -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pipeline", "train", f"data={source}", f"out={out}",
                        "overwrite=true", "verbose=2"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"training on {source} failed:\n{r.stderr[-3000:]}")
    recipe = next((line for line in r.stdout.splitlines() if line.startswith("recipe:")), None)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"recipe": recipe, "wall_s": wall, "train_s": metrics.get("train_seconds"),
            "test_accuracy": metrics["test_accuracy"], "val_accuracy": metrics.get("val_accuracy"),
            "epochs_run": metrics.get("epochs_run")}


def tta_gain(run: Path, photos: Path) -> dict[str, float]:
    import serving

    runner = serving.load(run / "model.keras")
    files = sorted((photos / "test").rglob("*.png"))
    labels = np.array([runner.labels.index(f.parent.name) for f in files])
    from serving.preprocess import load_images

    x = load_images(files, runner.contract)
    return {mode: float(np.mean(runner.predict(x, tta=mode).argmax(1) == labels))
            for mode in ("none", "flip", "flip_crop")}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=120)
    names = [r["dataset"] for r in rows]
    x = np.arange(len(rows))
    for k, (key, label) in enumerate([("test_accuracy", "default recipe (CNN)"),
                                      ("random_forest_hist", "random forest, colour histogram"),
                                      ("logistic_hist", "logistic regression, colour histogram")]):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=label)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy")
    ax.axhline(GOAL["real_photos_accuracy"], color="grey", ls="--", lw=0.8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("default recipe vs scikit-learn floors", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="real_photos,digits,shapes")
    ap.add_argument("--photos", default="data/real_photos")
    ap.add_argument("--runs", default="runs/bench-recipes")
    ap.add_argument("--out", default="bench/results/recipes.json")
    args = ap.parse_args()
    from serving.native_logs import import_tensorflow

    import_tensorflow()   # without its INFO lines
    photos = Path(args.photos)
    rows = []
    for name in args.datasets.split(","):
        source = str(photos) if name == "real_photos" else name
        if name == "real_photos" and not (photos / "train").is_dir():
            from bench.real_photos import make_real_photos

            make_real_photos(photos)
        print(f"{name}: training the default recipe ...", flush=True)
        row = {"dataset": name, **train_default(source, Path(args.runs) / name), **floors(source)}
        if name == "real_photos":
            row["tta"] = tta_gain(Path(args.runs) / name, photos)
        rows.append(row)
        print(f"  {row['recipe']}\n  test {row['test_accuracy']:.3f} in {row['wall_s']:.0f} s; floors: "
              f"forest {row['random_forest_hist']:.3f}, logistic {row['logistic_hist']:.3f}", flush=True)
    print(f"\n{'data set':<12}{'recipe test':>12}{'wall s':>8}{'forest':>8}{'logistic':>9}"
          "  tta flip / flip_crop")
    for r in rows:
        t = r.get("tta")
        extra = f"  {t['flip']:.3f} / {t['flip_crop']:.3f} (none {t['none']:.3f})" if t else ""
        print(f"{r['dataset']:<12}{r['test_accuracy']:>12.3f}{r['wall_s']:>8.0f}{r['random_forest_hist']:>8.3f}"
              f"{r['logistic_hist']:>9.3f}{extra}")
    print(f"measured on {describe()}")
    out = Path(args.out)
    write_json(out, {"bench": "recipes", "machine": measured_on(), "goal": GOAL, "rows": rows})
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
