"""Write the demo's built-in sample images (tiny PNGs, committed next to this script).

    python samples/make_samples.py          # rewrites samples/*.png + scenes.json, byte for byte the same

Six 64x64 scenes from the `shapes` data source (pipeline.data.shapes, the renderer the
training data uses, with its size and rotation ranges, so a model trained on `shapes` should
recognise them; make_scene's own defaults are wider: +-180 degrees, radius down to 0.18) and two 32x32
grayscale handwritten digits from scikit-learn's copy of the UCI digits set (`digits`
source), for classifiers; and three 128x128 detection scenes scene_a..scene_c.png from the
`shapes_det` source (pipeline.tasks.detection.scenes, its renderer and its classes circle, square,
triangle; 2-3 fairly large objects each) with their exact ground-truth boxes in scenes.json
(pixels x0, y0, x1, y1, x1/y1 exclusive), for detectors. Everything is seeded; no TensorFlow.
The demo only reads the PNGs and scenes.json (serving.samples), so it does not depend on
`pipeline`.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
DIGITS = (3, 7)     # digit classes; the first example of each in sklearn's order
SEED = 2024
SCENES = ("scene_a", "scene_b", "scene_c")
SCENES_JSON = "scenes.json"     # scene file -> {"size": [w, h], "objects": [{label, box}]}


def scene_config():
    """The shapes_det settings of the sample scenes (tests/demo_runs.py trains on the same)."""
    from pipeline.data.base import ShapesDetConfig

    return ShapesDetConfig(size=128, max_objects=3, object_size=(0.25, 0.45), noise=4.0)


def render_scenes() -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """scene file -> uint8 (128, 128, 3) image, and the scenes.json document. Scene i is the first
    seed [SEED, i, attempt] that gives at least two objects (a sample with one box shows little)."""
    from pipeline.tasks.detection.scenes import make_det_scene

    cfg = scene_config()
    images, truth = {}, {}
    for i, stem in enumerate(SCENES):
        for attempt in range(100):
            image, boxes, labels = make_det_scene(cfg, np.random.default_rng([SEED, i, attempt]))
            if len(boxes) >= 2:
                break
        images[f"{stem}.png"] = image
        truth[f"{stem}.png"] = {"size": [cfg.size, cfg.size], "objects": [
            {"label": cfg.class_names[int(c)], "box": [int(v) for v in b]} for b, c in zip(boxes, labels)]}
    return images, truth


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def render() -> dict[str, bytes]:
    """file name -> bytes of every sample (PNGs and scenes.json)."""
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
    scenes, truth = render_scenes()
    out.update({name: _png(Image.fromarray(image, "RGB")) for name, image in scenes.items()})
    out[SCENES_JSON] = ("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in truth.items())
                        + "\n}\n").encode()   # one scene a line
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
