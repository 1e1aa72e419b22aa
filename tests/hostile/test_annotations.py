"""Hostile and careless annotation folders (issue 20, causes 1-5): each gets one line naming the
file and the problem, never a traceback, never silently wrong data, never an unbounded allocation."""
import json
import shutil
import warnings

import pytest
from PIL import Image

from pipeline.data import DataConfig, DataError
from pipeline.data.base import ShapesDetConfig
from pipeline.tasks.detection.data import load_detection_dataset
from pipeline.tasks.detection.scenes import write_detection

SMALL = ShapesDetConfig(images=6, size=64)


def _load(root, **kw):
    kw.setdefault("val_split", 0.0)
    kw.setdefault("test_split", 0.0)
    return load_detection_dataset(DataConfig(source=str(root), **kw), image_size=(64, 64), channels=3)


def _layout(root, fmt):
    return write_detection(root, SMALL, fmt, seed=0, val_split=0, test_split=0)


def _coco(tmp_path):
    root = _layout(tmp_path / "coco", "coco")
    path = root / "annotations" / "instances_train.json"
    return root, path, json.loads(path.read_text())


def _fails(root, match):
    """The load fails with one DataError line matching `match`, and no warning on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=match) as e:
            _load(root)
    assert "\n" not in str(e.value) and len(str(e.value)) < 600
    return str(e.value)


# ------------------------------------------------------------------ cause 1


def test_yolo_labels_are_found_under_a_folder_named_like_images(tmp_path):
    root = _layout(tmp_path / "myimages_set", "yolo")
    ds = _load(root)
    assert ds.train.num_objects() > 0                     # the labels were found, not dropped
    for txt in (root / "labels" / "train").glob("*.txt"):
        txt.write_text("")                                 # every image a background image
    _fails(root, r"train split has 6 images but no boxes")


# ------------------------------------------------------------------ cause 2


def _outside(tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (64, 64)).save(secret)
    return secret


@pytest.mark.parametrize("fmt", ["coco", "voc", "csv", "yolo"])
def test_image_paths_outside_the_data_folder_are_refused(tmp_path, fmt):
    secret = _outside(tmp_path)
    root = _layout(tmp_path / "data", fmt)
    messages = []
    for target in (str(secret), "../../secret.png", "../../nothing_here.png"):
        if fmt == "coco":
            path = root / "annotations" / "instances_train.json"
            data = json.loads(path.read_text())
            data["images"][0]["file_name"] = target
            path.write_text(json.dumps(data))
        elif fmt == "voc":
            xml = sorted((root / "Annotations").glob("*.xml"))[0]
            text = xml.read_text()
            old = text.split("<filename>")[1].split("</filename>")[0]
            xml.write_text(text.replace(f"<filename>{old}</filename>", f"<filename>{target}</filename>"))
        elif fmt == "csv":
            path = root / "train.csv"
            lines = path.read_text().splitlines()
            old = lines[1].split(",")[0]
            path.write_text("\n".join([lines[0]] + [ln.replace(old, target) for ln in lines[1:]]) + "\n")
        else:
            outside = "/tmp" if target.startswith("/") else "../.."
            (root / "data.yaml").write_text(f"path: .\ntrain: {outside}\nnames: [circle, square, triangle]\n")
        messages.append(_fails(root, "outside the data folder"))
        shutil.rmtree(root)
        _layout(root, fmt)
    # the message never tells whether a file outside exists
    assert len({m.replace("nothing_here", "secret") for m in messages[1:]}) == 1


# ------------------------------------------------------------------ cause 3


def test_coco_duplicate_ids_and_non_numeric_boxes_are_refused(tmp_path):
    root, path, good = _coco(tmp_path)
    bad = json.loads(json.dumps(good))
    first, second = bad["images"][0]["id"], bad["images"][1]["id"]
    bad["images"][1]["id"] = first            # and its boxes now name the first image's id
    for a in bad["annotations"]:
        a["image_id"] = first if a["image_id"] == second else a["image_id"]
    path.write_text(json.dumps(bad))
    _fails(root, rf"instances_train.json: duplicate image id {bad['images'][0]['id']}")
    bad = json.loads(json.dumps(good))
    bad["categories"].append({"id": bad["categories"][0]["id"], "name": "impostor"})
    path.write_text(json.dumps(bad))
    _fails(root, r"instances_train.json: duplicate category id 1")
    for box in ("1234", [True, True, True, True], [1, 2, "3", 4], [1, 2, 3]):
        bad = json.loads(json.dumps(good))
        bad["annotations"][0]["bbox"] = box
        path.write_text(json.dumps(bad))
        _fails(root, r"annotation id 1 .*bbox must be \[x, y, width, height\] numbers")


# ------------------------------------------------------------------ cause 4


def test_malformed_coco_gets_one_line(tmp_path):
    root, path, good = _coco(tmp_path)
    path.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _fails(root, "instances_train.json: not valid JSON")
    for edit, match in ((lambda d: d["categories"][0].pop("name"), "category 1 needs a name"),
                        (lambda d: d["images"][0].pop("file_name"), "image id 1 needs a file_name"),
                        (lambda d: d["images"][0].update(file_name=5), "image id 1 needs a file_name"),
                        (lambda d: d["images"][0].update(id=[1]), "image id must be"),
                        (lambda d: d.update(images={"a": 1}), "images must be a list")):
        bad = json.loads(json.dumps(good))
        edit(bad)
        path.write_text(json.dumps(bad))
        _fails(root, f"instances_train.json: {match}")


def test_malformed_yolo_gets_one_line(tmp_path):
    root = _layout(tmp_path / "y", "yolo")
    (root / "data.yaml").write_text("- train\n- val\n")
    _fails(root, "data.yaml: must be a mapping")
    (root / "data.yaml").write_text("train: images/train\nnames: {0: a, x: b}\n")
    _fails(root, "data.yaml: names: ids must be 0..N-1")
    (root / "data.yaml").write_text("train: images/train\nnames: [circle, square, triangle]\n")
    first = sorted((root / "labels" / "train").glob("*.txt"))[0]
    first.write_text("0 0.5 0.5 1e308 1e308\n")
    _fails(root, rf"{first.name}:1: box has a non-finite coordinate|{first.name}:1: box .* outside")


# ------------------------------------------------------------------ cause 5


def test_sizes_are_bounded_before_allocating(tmp_path):
    root = _layout(tmp_path / "y", "yolo")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi"))
    (root / "data.yaml").write_text(bomb + "train: images/train\nnames: [*i, b, c]\n")
    _fails(root, r"data.yaml: names: class 0 must be a short name")
    csvdir = _layout(tmp_path / "c", "csv")
    (csvdir / "labels.txt").unlink()
    lines = (csvdir / "train.csv").read_text().splitlines()
    rows = [ln.split(",") for ln in lines[1:]]
    lines = [lines[0]] + [",".join([r[0], "0" if r[1] else "", *r[2:]]) for r in rows]
    lines[1] = ",".join([rows[0][0], "1000000000", *rows[0][2:]])
    (csvdir / "train.csv").write_text("\n".join(lines) + "\n")
    _fails(root=csvdir, match=r"train.csv:2: class id 1000000000 is over the limit")
    (root / "data.yaml").write_text("names: [a]\ntrain: images/train\n" + "#" * (2 << 20))
    _fails(root, r"data.yaml: .* MB is over the")
