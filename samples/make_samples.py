"""Write the demo's built-in sample images (tiny PNGs, committed next to this script).

    python samples/make_samples.py          # rewrites samples/*.png, byte for byte the same

Six 64x64 scenes from the `shapes` data source (pipeline.data.shapes, the renderer the
training data uses, with its size and rotation ranges, so a model trained on `shapes` should
recognise them; make_scene's own defaults are wider: +-180 degrees, radius down to 0.18) and two 32x32
grayscale handwritten digits from scikit-learn's copy of the UCI digits set (`digits`
source). Everything is seeded; no TensorFlow. The demo only reads the PNGs
(serving.demo.samples), so it does not depend on `pipeline`.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
DIGITS = (3, 7)     # digit classes; the first example of each in sklearn's order
SEED = 2024


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def render() -> dict[str, bytes]:
    """file name -> PNG bytes of every sample."""
    from sklearn.datasets import load_digits

    from pipeline.data.shapes import CLASSES, ShapesConfig, make_scene

    train = ShapesConfig()   # the pose and size ranges the `shapes` training data is drawn from
    out = {}
    for i, name in enumerate(SHAPES):
        rng = np.random.default_rng([SEED, i])
        image, _, _ = make_scene((64, 64), rng, labels=[CLASSES.index(name)], noise=4.0,
                                 scale=train.scale, rotation=train.rotation)
        out[f"{name}.png"] = _png(Image.fromarray(image, "RGB"))
    bunch = load_digits()
    for digit in DIGITS:
        first = int(np.flatnonzero(bunch.target == digit)[0])
        pixels = np.round(bunch.images[first] * (255.0 / 16.0)).astype(np.uint8)   # (8, 8) 0..255
        image = Image.fromarray(pixels, "L").resize((32, 32), Image.Resampling.BILINEAR)
        out[f"digit_{digit}.png"] = _png(image)
    return out


def main() -> int:
    from models.atomic import write_bytes

    for name, data in render().items():
        write_bytes(HERE / name, data)
        print(f"{HERE / name}  {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))   # run as a script from anywhere in the checkout
    sys.exit(main())
