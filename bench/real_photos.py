"""A real-photo classification check built from the photographs bundled in scikit-image's wheel
(no download): 10 classes, one photograph each, 64x64 patches cut at random positions and
scales (40 px up to 160 px of the original, resized) from DISJOINT bands of each photo, so no
patch of the test split overlaps a training patch. Five classes are colour photos, five are
grey-scale (textures and scenes), so colour alone does not separate them.

    python bench/real_photos.py [--out data/real_photos] [--train 60 --val 15 --test 30]

writes an image folder `out/{train,val,test}/<class>/*.png` that `python -m pipeline train
data=data/real_photos` reads as is (600 / 150 / 300 images by default). Seeded: the same
command writes the same files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# class name -> scikit-image loader name
PHOTOS = {"astronaut": "astronaut", "brick": "brick", "cameraman": "camera", "cat": "chelsea",
          "coffee": "coffee", "coins": "coins", "grass": "grass", "gravel": "gravel",
          "galaxies": "hubble_deep_field", "rocket": "rocket"}
SPLITS = (("train", 0.0, 0.6), ("val", 0.6, 0.75), ("test", 0.75, 1.0))   # bands along the long side
MIN_CROP, MAX_CROP = 40, 160


def photo(loader: str) -> np.ndarray:
    from skimage import data

    arr = getattr(data, loader)()
    return np.stack([arr] * 3, axis=-1) if arr.ndim == 2 else arr[..., :3]


def band(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    h, w = img.shape[:2]
    if w >= h:
        return img[:, int(lo * w):int(hi * w)]
    return img[int(lo * h):int(hi * h)]


def patches(region: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n square crops at random positions and sides in MIN_CROP..min(MAX_CROP, region), resized."""
    h, w = region.shape[:2]
    top = min(MAX_CROP, h, w)
    out = []
    for _ in range(n):
        side = int(rng.integers(min(MIN_CROP, top), top + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(np.ascontiguousarray(region[y:y + side, x:x + side]))
        out.append(np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR)))
    return out


def make_real_photos(out: str | Path, counts: dict[str, int] | None = None, size: int = 64,
                     seed: int = 0) -> Path:
    """Write the folder (replacing `out` only once it is complete) and return it."""
    counts = counts or {"train": 60, "val": 15, "test": 30}
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for cls, loader in PHOTOS.items():
        img = photo(loader)
        for split, lo, hi in SPLITS:
            folder = tmp / split / cls
            folder.mkdir(parents=True)
            for i, p in enumerate(patches(band(img, lo, hi), counts[split], size, rng)):
                Image.fromarray(p).save(folder / f"{cls}_{i:04d}.png")
    (tmp / "SOURCE.json").write_text(json.dumps(
        {"what": "64x64 patches of scikit-image's bundled photographs, disjoint bands per split",
         "classes": PHOTOS, "splits": {s: [lo, hi] for s, lo, hi in SPLITS}, "counts": counts,
         "crop_px": [MIN_CROP, MAX_CROP], "size": size, "seed": seed}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/real_photos")
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--val", type=int, default=15)
    ap.add_argument("--test", type=int, default=30)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = make_real_photos(args.out, {"train": args.train, "val": args.val, "test": args.test},
                           args.size, args.seed)
    n = sum(1 for _ in out.rglob("*.png"))
    print(f"wrote {n} images ({len(PHOTOS)} classes, train/val/test {args.train}/{args.val}/{args.test} "
          f"per class) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
