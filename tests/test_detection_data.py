"""Detection data: shapes_det scenes, each annotation layout read back equal to what was written,
and one-line errors for bad annotations."""
import json
import warnings

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.data import DataConfig, DataError, load_dataset
from pipeline.data.base import ShapesDetConfig
from pipeline.tasks.detection.data import load_detection_dataset
from pipeline.tasks.detection.scenes import generate_scenes, write_detection

SMALL = ShapesDetConfig(images=24, size=64)


def _load(root, **kw):
    cfg = DataConfig(source=str(root), **kw)
    return load_detection_dataset(cfg, image_size=(64, 64), channels=3)


def test_shapes_det_is_seeded_with_boxes_inside_the_image():
    a, b = generate_scenes(SMALL, seed=3), generate_scenes(SMALL, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert all(np.array_equal(x, y) for x, y in zip(a.boxes, b.boxes))
    allb = np.concatenate(a.boxes)
    assert len(allb) >= 24 and (allb >= 0).all() and (allb <= 1).all()
    assert (allb[:, 2] > allb[:, 0]).all() and (allb[:, 3] > allb[:, 1]).all()
    assert max(len(x) for x in a.boxes) <= SMALL.max_objects
    assert not np.array_equal(generate_scenes(SMALL, seed=4).images, a.images)


def test_shapes_det_box_frames_the_painted_object():
    from pipeline.data.shapes import draw_object

    img = np.zeros((64, 64, 3), np.float32)
    box = draw_object(img, "square", np.random.default_rng(0), center=(30, 20), radius=10, angle=0.0,
                      color=np.array([255, 255, 255], np.float32))
    x0, y0, x1, y1 = box
    on = img[..., 0] > 127
    assert on[y0:y1, x0:x1].sum() == on.sum()                    # every painted pixel is inside
    assert on[y0, x0:x1].any() and on[y1 - 1, x0:x1].any()       # and the box is tight


def test_load_dataset_splits_shapes_det():
    ds = load_detection_dataset(DataConfig("shapes_det", shapes_det=SMALL), image_size=(48, 48), channels=3)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (16, 4, 4)
    assert ds.train.images.shape[1:] == (48, 48, 3) and ds.class_names == ("circle", "square", "triangle")
    with pytest.raises(DataError, match="task=detection"):
        load_dataset(DataConfig("shapes_det"), image_size=(64, 64), channels=3)


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo", "csv"])
def test_each_layout_reads_back_the_boxes_written(tmp_path, fmt):
    written = generate_scenes(SMALL, seed=0)
    write_detection(tmp_path, SMALL, fmt, seed=0)
    for how in ("auto", fmt):
        ds = _load(tmp_path, format=how)
        assert ds.format == fmt and ds.class_names == SMALL.class_names
        assert (len(ds.train), len(ds.val), len(ds.test)) == (16, 4, 4)   # the splits written
        seen = 0
        for split in (ds.train, ds.val, ds.test):
            for name, boxes, labels, image in zip(split.names, split.boxes, split.labels, split.images):
                i = int(name.rsplit("scene", 1)[1].split(".")[0])
                np.testing.assert_allclose(boxes, written.boxes[i], atol=1e-6 if fmt != "yolo" else 2e-6)
                np.testing.assert_array_equal(labels, written.labels[i])
                np.testing.assert_array_equal(image, written.images[i])   # lossless PNG, same size
                seen += 1
        assert seen == SMALL.images


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_train_and_val_only_folder_tests_on_val_and_keeps_every_training_image(tmp_path, fmt):
    """No test split in the folder: val is the held-out test split (the summary says so); no
    training image is taken for a test split."""
    write_detection(tmp_path, SMALL, fmt, seed=0, val_split=0.25, test_split=0.0)
    ds = _load(tmp_path)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (18, 6, 6) and ds.test_is_val
    assert ds.test.names == ds.val.names
    assert "test = the folder's val split" in ds.summary()
    full = _load(write_detection(tmp_path / "all", SMALL, fmt, seed=0))   # train/val/test written
    assert not full.test_is_val and "test =" not in full.summary()


def test_make_shapes_cli_writes_a_layout(tmp_path, capsys):
    from pipeline.__main__ import main

    out = tmp_path / "yolo"
    assert main(["make-shapes", "task=detection", "format=yolo", f"out={out}",
                 "shapes_det.images=6", "shapes_det.size=64"]) == 0
    assert (out / "data.yaml").is_file() and (out / "labels" / "train").is_dir()
    assert "yolo layout" in capsys.readouterr().out
    assert main(["make-shapes", "task=detection", "format=jpg", f"out={out}"]) == 2
    assert "format=coco|voc|yolo|csv" in capsys.readouterr().err


# ------------------------------------------------------------------ bad annotations


def _yolo(tmp_path):
    write_detection(tmp_path, ShapesDetConfig(images=6, size=64), "yolo", seed=0, val_split=0, test_split=0)
    return tmp_path, sorted((tmp_path / "labels" / "train").glob("*.txt"))


def test_yolo_bad_lines(tmp_path):
    root, labels = _yolo(tmp_path)
    labels[0].write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=rf"{labels[0].name}:2: class id 7 is not in 0..2"):
        _load(root)
    labels[0].write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(DataError, match=rf"{labels[0].name}:1: expected 'class cx cy w h'"):
        _load(root)
    labels[0].write_text("0 0.9 0.5 0.5 0.2\n")               # x1 = 1.15: outside the image
    with pytest.raises(DataError, match=rf"{labels[0].name}:1: box .* is outside the 64x64 image"):
        _load(root)
    labels[0].write_text("0 0.5 0.5 0 0.2\n")                 # zero width
    with pytest.raises(DataError, match=rf"{labels[0].name}:1: empty box \(x1 <= x0"):
        _load(root)
    labels[0].write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=rf"{labels[0].name}: unreadable label file"):
        _load(root)
    with pytest.warns(UserWarning, match="skipped 1 of 6 images"):
        ds = _load(root, skip_bad_files=True, val_split=0.0, test_split=0.0)
    assert len(ds.train) == 5


def test_empty_label_file_is_a_background_image(tmp_path):
    root, labels = _yolo(tmp_path)
    labels[0].write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = _load(root, val_split=0.0, test_split=0.0)
    assert len(ds.train) == 6 and min(len(b) for b in ds.train.boxes) == 0


def test_coco_bad_annotations(tmp_path):
    write_detection(tmp_path, ShapesDetConfig(images=6, size=64), "coco", seed=0)
    path = tmp_path / "annotations" / "instances_train.json"
    good = json.loads(path.read_text())
    bad = json.loads(json.dumps(good))
    bad["annotations"][0]["category_id"] = 9
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="instances_train.json: annotation id 1 .*unknown category_id 9"):
        _load(tmp_path)
    bad = json.loads(json.dumps(good))
    bad["annotations"][0]["bbox"] = [60, 10, 20, 5]
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="annotation id 1 .*outside the 64x64 image"):
        _load(tmp_path)
    bad = json.loads(json.dumps(good))
    bad["images"][0]["file_name"] = "missing.png"
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="missing.png: no such file"):
        _load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="instances_train.json: not valid JSON"):
        _load(tmp_path)


def test_voc_and_csv_bad_annotations(tmp_path):
    voc, csvdir = tmp_path / "voc", tmp_path / "csv"
    write_detection(voc, ShapesDetConfig(images=6, size=64), "voc", seed=0)
    xml = sorted((voc / "Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    first = text.split("<name>")[1].split("</name>")[0]
    xml.write_text(text.replace(f"<name>{first}</name>", "<name>dog</name>", 1))
    with pytest.raises(DataError, match=rf"{xml.name}: object 1: unknown class 'dog'"):
        _load(voc)
    xml.write_text("<annotation><object>")
    with pytest.raises(DataError, match=rf"{xml.name}: unreadable label file"):
        _load(voc)
    write_detection(csvdir, ShapesDetConfig(images=6, size=64), "csv", seed=0)
    lines = (csvdir / "train.csv").read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:2] + ["30", "10", "20", "40"])   # x1 < x0
    (csvdir / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train.csv:2: empty box"):
        _load(csvdir)
    lines[1] = ",".join(lines[1].split(",")[:1] + ["hexagon", "1", "1", "5", "5"])
    (csvdir / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train.csv:2: unknown class 'hexagon'"):
        _load(csvdir)


def test_d2l_banana_style_csv_with_class_ids(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.new("RGB", (256, 256), (i * 40, 0, 0)).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n" +
                                        "".join(f"{i}.png,0,{10 + i},20,{100 + i},120\n" for i in range(4)))
    ds = _load(tmp_path, val_split=0.0, test_split=0.0)
    assert ds.class_names == ("class_0",) and len(ds.train) == 4
    np.testing.assert_allclose(ds.train.boxes[0], [[10 / 256, 20 / 256, 100 / 256, 120 / 256]], atol=1e-6)


def test_data_format_is_checked():
    from models.options import OptionError

    with pytest.raises(OptionError, match="did you mean: coco"):
        load_config(DataConfig, ["format=cocoo"])
    with pytest.raises(DataError, match="no such folder"):
        _load("/nonexistent/place")
