"""How hard is the generated `shapes` dataset? A linear model on raw pixels (scikit-learn
logistic regression, d2l 4.1 softmax regression) against a small CNN (VGG-11 at width 0.25
with BatchNorm, d2l 8.2), both without augmentation, on the same seeded train/val/test split.

    python bench/shapes_difficulty.py [--epochs 15] [--model vgg11 --options width=0.25 batch_norm=true]
        [--augment none]
        [--out bench/results/shapes_difficulty.json]

Prints a table, writes JSON and a PNG (CNN accuracy per epoch against the linear baseline).
The dataset is meant to need a CNN: clutter, colour and pose vary, only the outline tells the class.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.atomic import atomic_path, write_json  # noqa: E402
from serving.machine import measured_on  # noqa: E402


def linear_baseline(data, seed: int) -> dict:
    """Multinomial logistic regression on standardised raw pixels; C picked on the val split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def flat(split):
        return split.images.reshape(len(split), -1).astype(np.float32) / 255.0

    scaler = StandardScaler().fit(flat(data.train))
    xtr, xva, xte = (scaler.transform(flat(s)) for s in (data.train, data.val, data.test))
    best = None
    t = time.perf_counter()
    for c in (0.001, 0.01, 0.1):
        clf = LogisticRegression(C=c, max_iter=300, random_state=seed).fit(xtr, data.train.labels)
        val = clf.score(xva, data.val.labels)
        if best is None or val > best[1]:
            best = (c, val, clf)
    c, val, clf = best
    return {"model": "logistic regression (raw pixels)", "C": c, "seconds": round(time.perf_counter() - t, 1),
            "train_acc": round(float(clf.score(xtr, data.train.labels)), 4), "val_acc": round(float(val), 4),
            "test_acc": round(float(clf.score(xte, data.test.labels)), 4)}


def cnn(data, name: str, opts: dict, epochs: int, batch: int, seed: int, augment: str) -> dict:
    import keras

    from models import create_model
    from pipeline.augment import AugmentConfig
    from pipeline.data import make_tf_dataset

    keras.utils.set_random_seed(seed)
    size, k = data.image_size, data.num_classes
    kw = dict(image_size=size, channels=data.channels, num_classes=k, batch_size=batch)
    train = make_tf_dataset(data.train, training=True, augment=AugmentConfig(augment), seed=seed, **kw)
    val = make_tf_dataset(data.val, training=False, **kw)
    test = make_tf_dataset(data.test, training=False, **kw)
    model = create_model(name, num_classes=k, input_shape=(*size, data.channels), **opts)
    steps = epochs * -(-len(data.train) // batch)
    lr = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=3e-3, warmup_steps=steps // 20)
    model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=5e-4),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    t = time.perf_counter()
    hist = model.fit(train, validation_data=val, epochs=epochs, verbose=2)
    _, test_acc = model.evaluate(test, verbose=0)
    label = name + "".join(f" {k}={v}" for k, v in opts.items())
    return {"model": f"CNN {label}", "params": int(model.count_params()), "epochs": epochs,
            "augment": augment,
            "seconds": round(time.perf_counter() - t, 1),
            "train_acc": round(float(hist.history["accuracy"][-1]), 4),
            "val_acc": round(float(hist.history["val_accuracy"][-1]), 4),
            "test_acc": round(float(test_acc), 4),
            "val_acc_per_epoch": [round(float(v), 4) for v in hist.history["val_accuracy"]]}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    linear, net = rows
    curve = net["val_acc_per_epoch"]
    ax.plot(range(1, len(curve) + 1), curve, label=f"{net['model']} (val)")
    ax.axhline(linear["val_acc"], color="tab:red", ls="--", label=f"{linear['model']} (val)")
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="shapes: linear model vs small CNN")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from models.options import parse_kv

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg11")
    p.add_argument("--options", nargs="*", default=["width=0.25", "batch_norm=true"],
                   help="family options key=value")
    p.add_argument("--augment", default="none", help="augment preset for the CNN")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/shapes_difficulty.json")
    args = p.parse_args(argv)

    from pipeline.data import DataConfig, load_dataset, natural_input_shape

    cfg = DataConfig("shapes", seed=args.seed)
    shape = natural_input_shape(cfg)
    data = load_dataset(cfg, image_size=shape[:2], channels=shape[2])
    print(data.summary())
    rows = [linear_baseline(data, args.seed),
            cnn(data, args.model, parse_kv(args.options), args.epochs, args.batch, args.seed, args.augment)]

    head = f"{'model':<46}{'train acc':>10}{'val acc':>9}{'test acc':>10}{'seconds':>9}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['model']:<46}{r['train_acc']:>10.3f}{r['val_acc']:>9.3f}{r['test_acc']:>10.3f}"
              f"{r['seconds']:>9.1f}")
    print(f"chance: {1 / data.num_classes:.3f}")
    out = Path(args.out)
    write_json(out, {"bench": "shapes_difficulty", "machine": measured_on(), "data": data.summary(),
                     "seed": args.seed,
                     "chance": 1 / data.num_classes, "rows": rows})
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
