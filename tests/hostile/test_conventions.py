"""Conventions users bring (issue 20, cause 15): data= pointing at a YOLO data.yaml or a COCO
instances JSON instead of the folder; no matplotlib warning for a split without boxes."""
import warnings

import pytest

from pipeline.data import DataConfig, DataError
from pipeline.data.base import ShapesDetConfig
from pipeline.tasks.detection.data import load_detection_dataset
from pipeline.tasks.detection.scenes import write_detection

SMALL = ShapesDetConfig(images=12, size=64)


def _load(source, **kw):
    return load_detection_dataset(DataConfig(source=str(source), **kw), image_size=(64, 64), channels=3)


def test_data_can_be_the_yolo_yaml_file(tmp_path):
    root = write_detection(tmp_path / "y", SMALL, "yolo", seed=0)
    (root / "data.yaml").rename(root / "coco8.yaml")          # Ultralytics names it after the set
    by_file = _load(root / "coco8.yaml")
    assert by_file.format == "yolo" and by_file.train.num_objects() > 0
    (root / "coco8.yaml").rename(root / "data.yaml")
    by_folder = _load(root)
    assert [len(s) for s in (by_file.train, by_file.val, by_file.test)] == \
        [len(s) for s in (by_folder.train, by_folder.val, by_folder.test)]


def test_data_can_be_a_coco_instances_json(tmp_path):
    root = write_detection(tmp_path / "c", SMALL, "coco", seed=0)
    ds = _load(root / "annotations" / "instances_train.json", val_split=0.25, test_split=0.0)
    assert ds.format == "coco" and ds.train.num_objects() > 0 and len(ds.val) > 0
    assert len(ds.train) + len(ds.val) == len(_load(root).train)   # that file alone: train only
    (root / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="data= takes a folder, a YOLO data.yaml or a COCO"):
        _load(root / "notes.txt")


def test_pr_curves_of_a_split_without_boxes_plot_without_a_warning(tmp_path):
    from pipeline.tasks.detection.evaluate import plot_pr_curves

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_pr_curves({}, tmp_path / "pr.png")
    assert (tmp_path / "pr.png").stat().st_size > 0
