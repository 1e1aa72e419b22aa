"""The `shapes` source: an offline, seeded generator of colourful geometric objects.

Twelve object classes (circle, square, triangle, star, cross, ring, ...) at random scale,
rotation, position, colour and shading, over cluttered backgrounds (colour gradients, lines,
blurred blobs) with Gaussian noise. The renderer is shared with a future detection dataset:
`draw_object` returns the object's tight pixel box and `make_scene` places several objects.

Each image i is drawn from its own generator `default_rng([seed, i])`, so the dataset is
the same on every machine and a larger `per_class` only appends images.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from models.atomic import atomic_path
from pipeline.data.base import SHAPE_CLASSES as CLASSES
from pipeline.data.base import ShapesConfig

SUPERSAMPLE = 4   # object masks are drawn 4x larger and box-filtered down: anti-aliased edges


def _ngon(n: int, r: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star() -> np.ndarray:
    pts = _ngon(10)
    pts[1::2] *= 0.42
    return pts


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # y points down
    return np.stack([x, y + 2.5], axis=1) / 17.0


def _cross(a: float = 0.33) -> np.ndarray:
    return np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1),
                     (-a, a), (-1, a), (-1, -a), (-a, -a)], float)


# class -> [(polygon (K, 2) in a unit disc, fill)]; fill 0 cuts a hole into what came before
OUTLINES: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_ngon(48), 255)],
    "square": [(_ngon(4, phase=np.pi / 4), 255)],
    "triangle": [(_ngon(3) + (0, 0.2), 255)],
    "star": [(_star(), 255)],
    "cross": [(_cross(), 255)],
    "ring": [(_ngon(48), 255), (_ngon(48, 0.55), 0)],
    "hexagon": [(_ngon(6), 255)],
    "crescent": [(_ngon(48), 255), (_ngon(48, 0.85) + (0.45, -0.15), 0)],
    "arrow": [(np.array([(-1, -0.25), (0.15, -0.25), (0.15, -0.62), (1, 0), (0.15, 0.62),
                         (0.15, 0.25), (-1, 0.25)], float), 255)],
    "heart": [(_heart(), 255)],
    "semicircle": [(np.concatenate([_ngon(25, phase=0)[:13], [(-1, 0)]]) * (1, 1) - (0, 0.42), 255)],
    "frame": [(_ngon(4, phase=np.pi / 4), 255), (_ngon(4, 0.62, phase=np.pi / 4), 0)],
}


def _hsv_color(rng: np.random.Generator) -> np.ndarray:
    import colorsys

    h, s, v = rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.3, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255.0


def make_background(height: int, width: int, rng: np.random.Generator,
                    lines: tuple[int, int] = (2, 6)) -> np.ndarray:
    """float32 (H, W, 3) in 0..255: a gradient, blurred blobs and lines[0]..lines[1] lines."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * xx / width + np.sin(theta) * yy / height)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)                       # (H, W) 0..1
    c0, c1 = _hsv_color(rng), _hsv_color(rng)
    img = Image.fromarray((c0 + (c1 - c0) * ramp[..., None]).astype(np.uint8), "RGB")
    blobs = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(blobs)
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.08, 0.35) * width, rng.uniform(0.08, 0.35) * height
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry),
                     fill=(*_hsv_color(rng).astype(int).tolist(), int(rng.uniform(60, 160))))
    blobs = blobs.filter(ImageFilter.GaussianBlur(radius=0.06 * min(width, height)))
    img = Image.alpha_composite(img.convert("RGBA"), blobs).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(lines[0], lines[1] + 1)):
        x0, y0, x1, y1 = rng.uniform(-0.2, 1.2, 4) * (width, height, width, height)
        draw.line((x0, y0, x1, y1), fill=tuple(_hsv_color(rng).astype(int).tolist()),
                  width=int(rng.integers(1, max(1, min(width, height) // 32) + 1)))
    return np.asarray(img, np.float32)


def draw_object(img: np.ndarray, cls: int | str, rng: np.random.Generator, *,
                center: tuple[float, float] | None = None, radius: float | None = None,
                angle: float | None = None, color: np.ndarray | None = None,
                ) -> tuple[int, int, int, int] | None:
    """Paint one object into float32 img (H, W, 3) in place; return its box (x0, y0, x1, y1).

    The box is tight around the painted pixels (alpha > 0.5), x1/y1 exclusive, in pixels of
    img; None if nothing of the object is visible. Unset geometry/colour is drawn from rng.
    """
    name = CLASSES[cls] if isinstance(cls, (int, np.integer)) else cls
    h, w = img.shape[:2]
    side = min(h, w)
    radius = rng.uniform(0.18, 0.42) * side if radius is None else radius
    if center is None:
        center = (rng.uniform(radius, w - radius), rng.uniform(radius, h - radius))
    angle = rng.uniform(-np.pi, np.pi) if angle is None else angle
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    polys = [(pts @ rot.T * radius + center, fill) for pts, fill in OUTLINES[name]]
    # Draw only the region around the object, supersampled.
    allpts = np.concatenate([p for p, _ in polys])
    x0, y0 = np.maximum(np.floor(allpts.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(allpts.max(0)).astype(int) + 1, (w, h))
    if x1 <= x0 or y1 <= y0:
        return None
    ss = SUPERSAMPLE
    mask = Image.new("L", ((x1 - x0) * ss, (y1 - y0) * ss), 0)
    draw = ImageDraw.Draw(mask)
    for pts, fill in polys:
        draw.polygon([tuple(p) for p in (pts - (x0, y0)) * ss], fill=fill)
    alpha = np.asarray(mask.reduce(ss), np.float32)[..., None] / 255.0           # (h', w', 1)
    if color is None:
        color = _contrasting_color(img[y0:y1, x0:x1], rng)
    # Shading: +-25% brightness along a random direction, so colour alone is not a cue.
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    t = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + 0.25 * ((xx - center[0]) * np.cos(t) + (yy - center[1]) * np.sin(t)) / radius
    paint = np.clip(color * shade[..., None], 0, 255)
    region = img[y0:y1, x0:x1]
    region[...] = region * (1 - alpha) + paint * alpha
    on = alpha[..., 0] > 0.5
    if not on.any():
        return None
    rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    return (int(x0 + cols[0]), int(y0 + rows[0]), int(x0 + cols[-1] + 1), int(y0 + rows[-1] + 1))


def _contrasting_color(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random colour at least a little away from the region's mean colour."""
    mean = region.reshape(-1, 3).mean(0)
    for _ in range(10):
        c = _hsv_color(rng)
        if np.linalg.norm(c - mean) > 110:
            return c
    return np.where(mean > 127, 0.15, 0.9).astype(np.float32) * 255.0


def make_scene(size: tuple[int, int], rng: np.random.Generator, *, classes: tuple[str, ...] = CLASSES,
               labels: list[int] | None = None, n_objects: int = 1, noise: float = 8.0,
               scale: tuple[float, float] = (0.18, 0.42), rotation: float = 180.0,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cluttered scene: uint8 (H, W, 3), boxes int32 (K, 4) x0,y0,x1,y1, labels int32 (K,).

    `labels` picks the objects (indices into `classes`), else n_objects random ones; each has
    a radius of `scale` x the shorter side (shrunk by sqrt(K) for K objects) and a rotation
    within +-`rotation` degrees. Objects avoid each other where possible (20 tries each).
    """
    h, w = size
    img = make_background(h, w, rng)
    labels = list(rng.integers(0, len(classes), n_objects)) if labels is None else list(labels)
    placed: list[tuple[float, float, float]] = []
    boxes, kept = [], []
    for lab in labels:
        for _ in range(20):
            r = rng.uniform(*scale) * min(h, w) / np.sqrt(len(labels))
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            if all(np.hypot(cx - px, cy - py) > r + pr for px, py, pr in placed):
                break
        placed.append((cx, cy, r))
        angle = np.radians(rng.uniform(-rotation, rotation))
        box = draw_object(img, classes[lab], rng, center=(cx, cy), radius=r, angle=angle)
        if box is not None:
            boxes.append(box)
            kept.append(lab)
    if noise > 0:
        img += rng.normal(0.0, rng.uniform(0, noise), img.shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return image, np.array(boxes, np.int32).reshape(-1, 4), np.array(kept, np.int32)


def generate_shapes(cfg: ShapesConfig = ShapesConfig(), *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (per_class * K, size, size, 3) images and int32 labels (i % K), K = len(cfg.class_names)."""
    names = cfg.class_names
    n = cfg.per_class * len(names)
    images = np.empty((n, cfg.size, cfg.size, 3), np.uint8)
    labels = np.arange(n, dtype=np.int32) % len(names)
    for i in range(n):
        images[i] = make_scene((cfg.size, cfg.size), np.random.default_rng([seed, i]),
                               classes=names, labels=[int(labels[i])], noise=cfg.noise,
                               scale=cfg.scale, rotation=cfg.rotation)[0]
    return images, labels


def write_image_folder(out_dir: str | os.PathLike, cfg: ShapesConfig = ShapesConfig(), *,
                       seed: int = 0, suffix: str = ".png") -> Path:
    """Write the shapes dataset as `out_dir/<class>/<index><suffix>` (each file atomically)."""
    from tqdm import tqdm

    out = Path(out_dir)
    fmt = Image.registered_extensions()[suffix]
    images, labels = generate_shapes(cfg, seed=seed)
    for i, (image, label) in enumerate(tqdm(list(zip(images, labels)), desc=f"writing {out}",
                                            unit="img", disable=len(images) < 500, leave=False)):
        with atomic_path(out / cfg.class_names[label] / f"{i:06d}{suffix}") as tmp:
            Image.fromarray(image, "RGB").save(tmp, format=fmt)
    return out
