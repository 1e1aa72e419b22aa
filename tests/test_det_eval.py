"""COCO mAP through pycocotools: perfect predictions score 1.0, shuffled ones score low; plots."""
import numpy as np

from pipeline.data.base import ShapesDetConfig
from pipeline.tasks.detection.evaluate import coco_metrics, plot_pr_curves, plot_prediction_grid
from pipeline.tasks.detection.scenes import generate_scenes

CLASSES = ("circle", "square", "triangle")


def _gt():
    split = generate_scenes(ShapesDetConfig(images=40, size=64), seed=0)
    return split, split.boxes, split.labels


def test_perfect_predictions_score_one():
    _, boxes, labels = _gt()
    dets = [(b, np.ones(len(b), np.float32), lab) for b, lab in zip(boxes, labels)]
    m = coco_metrics(boxes, labels, dets, CLASSES, (64, 64))
    assert m["map"] == 1.0 and m["map50"] == 1.0 and m["ar100"] == 1.0
    assert all(v == 1.0 for v in m["per_class_ap"].values())


def test_shuffled_predictions_score_low():
    _, boxes, labels = _gt()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(boxes))               # every image gets another image's boxes
    dets = [(boxes[j], np.ones(len(boxes[j]), np.float32), labels[j]) for j in order]
    m = coco_metrics(boxes, labels, dets, CLASSES, (64, 64))
    assert m["map"] < 0.1 and m["map50"] < 0.15
    # right boxes, wrong classes: AP collapses too
    wrong = [(b, np.ones(len(b), np.float32), (lab + 1) % 3) for b, lab in zip(boxes, labels)]
    assert coco_metrics(boxes, labels, wrong, CLASSES, (64, 64))["map"] == 0.0


def test_slightly_shifted_boxes_keep_map50_but_lose_strict_ap():
    _, boxes, labels = _gt()
    # each box moved by 10% of its size right and down: IoU 0.81 / 1.19 = 0.68
    def shift(b):
        d = np.concatenate([b[:, 2:] - b[:, :2]] * 2, axis=1) * 0.1
        return b + d

    dets = [(shift(b), np.ones(len(b), np.float32), lab) for b, lab in zip(boxes, labels)]
    m = coco_metrics(boxes, labels, dets, CLASSES, (64, 64))
    assert m["map50"] == 1.0 and 0.3 < m["map"] < 0.7


def test_plots_write_pngs(tmp_path):
    split, boxes, labels = _gt()
    dets = [(b, np.full(len(b), 0.9, np.float32), lab) for b, lab in zip(boxes, labels)]
    m = coco_metrics(boxes, labels, dets, CLASSES, (64, 64))
    plot_pr_curves(m["pr"], tmp_path / "pr.png")
    plot_prediction_grid(split.images, boxes, labels, dets, CLASSES, tmp_path / "grid.png", n=6)
    assert (tmp_path / "pr.png").stat().st_size > 2000 and (tmp_path / "grid.png").stat().st_size > 2000
