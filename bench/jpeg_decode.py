"""End-to-end classification of 12-megapixel phone JPEGs: the shared decoder's draft mode
(serving/images.py: libjpeg DCT scaling to >= the model size, then the exact resize) against
decoding every pixel first, through serving with one exported file.

    python bench/jpeg_decode.py [--model runs/quickstart/export/model_fp32.tflite] [--runs 5]
        [--out bench/results/jpeg_decode.json]

The photos are scikit-image's bundled ones blown up to 4000x3000 and saved as JPEG (quality
92), like a phone's. Goal (issue 13): <= 60 ms end to end per 12 MP JPEG. Also reports the top-1
agreement between both paths and the largest probability difference.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from models.atomic import write_json  # noqa: E402
from serving.machine import describe, measured_on  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "brick", "camera")
GOAL_MS = 60.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/quickstart/export/model_fp32.tflite")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="bench/results/jpeg_decode.json")
    args = ap.parse_args()
    from skimage import data

    import serving
    from serving.images import convert_mode, open_image

    runner = serving.load(args.model)
    h, w = runner.contract.size
    folder = Path(tempfile.mkdtemp(prefix="jpeg-bench-"))
    paths = []
    for name in PHOTOS:
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        img = img.resize((4000, 3000), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        (folder / f"{name}.jpg").write_bytes(buf.getvalue())
        paths.append(folder / f"{name}.jpg")

    def full(path: Path) -> np.ndarray:
        img = convert_mode(open_image(path), runner.contract.channels)   # every pixel decoded
        arr = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))
        return runner.predict(arr.reshape(1, h, w, -1))[0]

    def fast(path: Path) -> np.ndarray:
        return runner.predict(serving.preprocess.load_images([path], runner.contract))[0]

    timings = {"draft": [], "full": []}
    probs = {"draft": [], "full": []}
    for _ in range(args.runs):
        for key, fn in (("draft", fast), ("full", full)):
            for p in paths:
                t = time.perf_counter()
                out = fn(p)
                timings[key].append((time.perf_counter() - t) * 1e3)
                if len(probs[key]) < len(paths):
                    probs[key].append(out)
    res = {k: {"p50_ms": float(np.median(v)), "mean_ms": float(np.mean(v))} for k, v in timings.items()}
    a, b = np.stack(probs["draft"]), np.stack(probs["full"])
    res["top1_agreement"] = float(np.mean(a.argmax(1) == b.argmax(1)))
    res["max_abs_prob_diff"] = float(np.abs(a - b).max())
    print(f"{'path':<8}{'p50 ms':>9}{'mean ms':>9}   ({len(paths)} photos 4000x3000 -> {h}x{w}, "
          f"{args.model})")
    for k in ("draft", "full"):
        print(f"{k:<8}{res[k]['p50_ms']:>9.1f}{res[k]['mean_ms']:>9.1f}")
    print(f"speed-up {res['full']['p50_ms'] / res['draft']['p50_ms']:.1f}x; top-1 agreement "
          f"{res['top1_agreement']:.3f}, max |dp| {res['max_abs_prob_diff']:.4f}; goal <= {GOAL_MS:.0f} ms: "
          f"{'met' if res['draft']['p50_ms'] <= GOAL_MS else 'MISSED'}")
    print(f"measured on {describe()}")
    write_json(args.out, {"bench": "jpeg_decode", "machine": measured_on(), "model": args.model,
                          "goal_ms": GOAL_MS, "photos": list(PHOTOS), **res})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
