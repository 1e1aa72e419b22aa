"""pipeline.data: image folders (explicit and split val/test, bad files, every image mode),
digits, the shapes generator and make_tf_dataset, on tiny real data."""
import io

import numpy as np
import pytest
from PIL import Image

from models.options import OptionError
from pipeline.config import load_config
from pipeline.data import DataConfig, DataError, ShapesConfig, load_dataset, make_tf_dataset
from pipeline.data.folder import BadFilesWarning
from pipeline.data.shapes import CLASSES, draw_object, generate_shapes, make_scene, write_image_folder


def make_folder(root, counts, size=(12, 10), suffix=".png"):
    """root/<class>/<i>.png, class k filled with grey level 20*(k+1) + i (so files are tellable)."""
    for k, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", size, (20 * (k + 1) + i,) * 3).save(root / name / f"{i:03d}{suffix}")
    return root


def load(root, **kw):
    cfg = load_config(DataConfig, {"source": str(root), **kw})
    return load_dataset(cfg, image_size=(8, 8), channels=3)


def test_folder_with_seeded_stratified_split(tmp_path):
    make_folder(tmp_path, {"cat": 20, "dog": 40})
    ds = load(tmp_path, val_split=0.25, test_split=0.25)
    assert ds.class_names == ("cat", "dog") and ds.channels == 3
    for split, share in ((ds.train, 0.5), (ds.val, 0.25), (ds.test, 0.25)):
        assert split.images.shape[1:] == (8, 8, 3) and split.images.dtype == np.uint8
        assert list(split.class_counts(2)) == [20 * share, 40 * share]   # stratified
    all_pixels = np.concatenate([s.images[:, 0, 0, 0] for s in (ds.train, ds.val, ds.test)])
    assert len(set(all_pixels.tolist())) == 60                            # no file twice
    again, other = load(tmp_path, val_split=0.25, test_split=0.25), load(tmp_path, seed=1)
    assert np.array_equal(again.val.images, ds.val.images)               # same seed, same split
    assert not np.array_equal(other.val.images[:5], ds.val.images[:5])


def test_explicit_train_val_test_folders_and_config_keys(tmp_path):
    make_folder(tmp_path / "data" / "train", {"a": 6, "b": 6})
    make_folder(tmp_path / "data" / "valid", {"a": 2, "b": 3})
    make_folder(tmp_path / "data" / "test", {"b": 1})
    ds = load(tmp_path / "data")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (12, 5, 1)
    assert list(ds.test.labels) == [1]                                   # 'b' keeps its training index
    make_folder(tmp_path / "flat", {"a": 10, "b": 10})
    ds = load(tmp_path / "flat", val_dir=str(tmp_path / "data" / "valid"), test_split=0.2)
    # train + val and no test: val is the held-out test split, every training file trains
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 5, 5) and ds.test_is_val
    assert ds.test is ds.val and "test = the folder's val split" in ds.summary()
    ds = load(tmp_path / "flat", test_dir=str(tmp_path / "data" / "valid"), val_split=0.2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (16, 4, 5) and not ds.test_is_val
    make_folder(tmp_path / "extra", {"zebra": 1})
    with pytest.raises(DataError, match="class folder 'zebra' is not a class of the training folder"):
        load(tmp_path / "flat", test_dir=str(tmp_path / "extra"))


def corrupt(path):
    """A real JPEG cut short: its header reads fine, decoding fails."""
    buf = io.BytesIO()
    Image.effect_noise((128, 128), 40).convert("RGB").save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])


def test_bad_files_clear_error_or_skipped_with_one_warning(tmp_path, recwarn):
    make_folder(tmp_path, {"a": 5, "b": 5})
    corrupt(tmp_path / "a" / "broken.jpg")
    (tmp_path / "b" / "notes.png").write_text("not an image")
    Image.new("RGB", (4, 4)).save(tmp_path / "b" / "scan.tiff")
    with pytest.raises(DataError, match=r"broken\.jpg: truncated or corrupt image"):
        load(tmp_path, val_split=0, test_split=0)
    ds = load(tmp_path, val_split=0, test_split=0, skip_bad_files=True)
    assert len(ds.train) == 10
    bad = [w for w in recwarn.list if issubclass(w.category, BadFilesWarning)]
    assert len(bad) == 1
    assert "skipped 3 of 13 files" in str(bad[0].message) and "broken.jpg" in str(bad[0].message)


def test_empty_or_missing_folders_are_clear_errors(tmp_path):
    make_folder(tmp_path / "d", {"a": 3})
    (tmp_path / "d" / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder 'b' has no images"):
        load(tmp_path / "d")
    (tmp_path / "loose").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "loose" / "x.png")
    with pytest.raises(DataError, match="no class subfolders"):
        load(tmp_path / "loose")
    with pytest.raises(DataError, match="a classifier needs at least two"):
        load(make_folder(tmp_path / "one", {"a": 2}))
    with pytest.raises(OptionError, match="is not 'digits', 'shapes' or an existing image folder"):
        load(tmp_path / "nope")
    with pytest.raises(OptionError, match="val_split \\+ data.test_split must be < 1"):
        load_config(DataConfig, ["source=digits", "val_split=0.5", "test_split=0.5"])


def test_every_image_mode_loads_upright_through_load_dataset(tmp_path):
    m = tmp_path / "modes"
    (m / "x").mkdir(parents=True)
    make_folder(m, {"y": 1})
    arr16 = np.full((8, 8), 65535, np.uint16)
    Image.fromarray(arr16).save(m / "x" / "0_g16.png")
    Image.new("RGB", (8, 8), (255, 0, 0)).convert("P").save(m / "x" / "1_pal.png")
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 0))
    rgba.save(m / "x" / "2_rgba.png")                                   # transparent -> white
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(m / "x" / "3_cmyk.jpg", quality=100)
    Image.new("L", (8, 8), 77).save(m / "x" / "4_grey.bmp")
    top_red = Image.new("RGB", (16, 8), (0, 0, 255))                     # 16 wide: red left half
    top_red.paste(Image.new("RGB", (8, 8), (255, 0, 0)), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6                                                     # rotate 90 CW to display
    top_red.save(m / "x" / "5_exif.jpg", exif=exif, quality=95)
    Image.new("RGB", (8, 8), (0, 255, 0)).save(m / "x" / "6_anim.gif")
    Image.new("RGB", (8, 8), (0, 0, 255)).save(m / "x" / "7_lossless.webp", lossless=True)
    ds = load(m, val_split=0, test_split=0)
    x = ds.train.images[ds.train.labels == 0]                            # files in name order
    assert x.shape == (8, 8, 8, 3)
    assert x[6, 4, 4, 1] > 200 and tuple(x[7, 4, 4]) == (0, 0, 255)      # GIF, WebP
    assert (x[0] == 255).all()                                           # 16-bit white, scaled
    assert tuple(x[1, 4, 4]) == (255, 0, 0)                              # palette
    assert tuple(x[2, 4, 4]) == (255, 255, 255)                          # RGBA over white
    assert x[3, 4, 4, 0] > 220 and x[3, 4, 4, 1:].max() < 40             # CMYK red
    assert (x[4] == 77).all()                                            # greyscale -> RGB
    assert x[5, 1, 4, 0] > 200 and x[5, 6, 4, 2] > 200                   # red on top after EXIF
    grey = load_dataset(load_config(DataConfig, {"source": str(m), "val_split": 0, "test_split": 0}),
                        image_size=(4, 4), channels=1)
    assert grey.train.images.shape == (9, 4, 4, 1)


def test_lazy_folder_decodes_in_tf_data_like_in_memory(tmp_path):
    make_folder(tmp_path / "f", {"a": 5, "b": 5}, size=(16, 16))
    eager = load(tmp_path / "f", val_split=0, test_split=0)
    cache_file = str(tmp_path / "cache" / "train")
    (tmp_path / "cache").mkdir()
    for cache in ("none", "memory", cache_file):
        lazy = load(tmp_path / "f", val_split=0, test_split=0, max_memory_mb=0, cache=cache)
        assert lazy.train.images is None and len(lazy.train.paths) == 10
        batches = list(make_tf_dataset(lazy.train, image_size=(8, 8), channels=3, num_classes=2,
                                       batch_size=4, training=False))
        x = np.concatenate([b[0].numpy() for b in batches])
        assert np.array_equal(x, eager.train.images.astype(np.float32))
    corrupt(tmp_path / "f" / "a" / "zz.jpg")                             # header ok, decode fails
    lazy = load(tmp_path / "f", val_split=0, test_split=0, max_memory_mb=0, skip_bad_files=True)
    assert len(lazy.train) == 11                                         # passed the header probe
    with pytest.warns(BadFilesWarning, match=r"zz\.jpg: truncated"):
        n = sum(len(b[0]) for b in make_tf_dataset(lazy.train, image_size=(8, 8), channels=3,
                                                   num_classes=2, batch_size=4, training=True))
    assert n == 10


def test_digits_shape_and_range():
    ds = load_dataset(DataConfig("digits"), image_size=(28, 28), channels=1)
    x = np.concatenate([ds.train.images, ds.val.images, ds.test.images])
    assert x.shape == (1797, 28, 28, 1) and x.dtype == np.uint8
    assert x.min() == 0 and x.max() == 255 and ds.class_names == tuple("0123456789")
    assert ds.train.class_counts(10).min() > 100


def test_shapes_is_deterministic_and_has_every_class():
    cfg = ShapesConfig(per_class=3, size=32, classes=12)
    x, y = generate_shapes(cfg, seed=0)
    x2, _ = generate_shapes(cfg, seed=0)
    x3, _ = generate_shapes(cfg, seed=1)
    assert x.shape == (36, 32, 32, 3) and np.array_equal(x, x2) and not np.array_equal(x, x3)
    assert np.bincount(y).tolist() == [3] * 12 and len(CLASSES) >= 10
    cfg = DataConfig("shapes", shapes=ShapesConfig(per_class=4, classes=10), val_split=0.25, test_split=0)
    ds = load_dataset(cfg, image_size=(48, 48), channels=1)
    assert ds.num_classes == 10 and ds.train.images.shape == (30, 48, 48, 1) and len(ds.val) == 10
    for bad, msg in (("shapes.scale=0.3,0.7", "data.shapes.scale must be"),
                     ("shapes.classes=13", "data.shapes.classes must be in 2..12"),
                     ("shapes.rotation=200", "data.shapes.rotation must be in 0..180")):
        with pytest.raises(OptionError, match=msg):
            load_config(DataConfig, ["source=shapes", bad])


def test_draw_object_box_is_tight_and_scenes_hold_several_objects(rng):
    img = np.zeros((64, 64, 3), np.float32)
    box = draw_object(img, "square", rng, center=(32, 20), radius=10, angle=0.0,
                      color=np.array([255, 255, 255], np.float32))
    x0, y0, x1, y1 = box
    painted = img[..., 0] > 127
    assert painted[y0:y1, x0:x1].sum() == painted.sum() > 0
    assert abs((x1 - x0) - 14) <= 1 and abs((y1 - y0) - 14) <= 1        # side = radius * sqrt 2
    image, boxes, labels = make_scene((96, 96), rng, n_objects=3)
    assert image.shape == (96, 96, 3) and boxes.shape == (3, 4) and labels.shape == (3,)
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] <= 96).all()


def test_write_image_folder_loads_back_identically(tmp_path):
    cfg = ShapesConfig(per_class=2, size=32, classes=3)
    root = write_image_folder(tmp_path / "shapes", cfg, seed=5)
    assert sorted(p.name for p in root.iterdir()) == ["circle", "square", "triangle"]
    ds = load(root, val_split=0, test_split=0)
    folder = load_dataset(load_config(DataConfig, {"source": str(root), "val_split": 0, "test_split": 0}),
                          image_size=(32, 32), channels=3)
    x, y = generate_shapes(cfg, seed=5)
    order = np.argsort(y, kind="stable")
    assert np.array_equal(folder.train.images, x[order]) and len(ds.train) == 6


def test_make_tf_dataset_batches_dtypes_and_order():
    cfg = DataConfig("shapes", shapes=ShapesConfig(per_class=3, size=32, classes=4),
                     val_split=0, test_split=0)
    ds = load_dataset(cfg, image_size=(32, 32), channels=3)
    kw = dict(image_size=(32, 32), channels=3, num_classes=4, batch_size=5)
    batches = list(make_tf_dataset(ds.train, training=False, **kw))
    assert [len(b[0]) for b in batches] == [5, 5, 2]
    x, y = batches[0]
    assert x.dtype.name == "float32" and x.shape == (5, 32, 32, 3) and y.shape == (5, 4)
    assert np.array_equal(x.numpy(), ds.train.images[:5].astype(np.float32))
    assert np.array_equal(y.numpy().argmax(1), ds.train.labels[:5]) and (y.numpy().sum(1) == 1).all()
    shuffled = np.concatenate([b[1].numpy().argmax(1)
                               for b in make_tf_dataset(ds.train, training=True, **kw)])
    assert sorted(shuffled) == sorted(ds.train.labels) and not np.array_equal(shuffled, ds.train.labels)
    with pytest.raises(ValueError, match="load the dataset with the model's input size"):
        make_tf_dataset(ds.train, training=False, **{**kw, "image_size": (16, 16)})


def test_make_shapes_command_writes_a_loadable_folder(tmp_path, capsys):
    from pipeline.__main__ import main

    out = tmp_path / "shapes"
    assert main(["make-shapes", f"out={out}", "shapes.per_class=2", "shapes.size=32",
                 "shapes.classes=3", "format=jpg"]) == 0
    assert "wrote 6 images of 3 classes" in capsys.readouterr().out
    assert "per_class: 2" in (out / "shapes.yaml").read_text()
    ds = load(out, val_split=0, test_split=0)
    assert ds.class_names == ("circle", "square", "triangle") and len(ds.train) == 6
    assert main(["make-shapes", "shapes.clases=3"]) == 2
    assert "did you mean: classes" in capsys.readouterr().err


def test_two_folders_for_one_split_is_an_error(tmp_path):
    for name in ("train", "val", "validation"):
        make_folder(tmp_path / name, {"a": 1, "b": 1})
    with pytest.raises(DataError, match="'val' and 'validation' look like the val split"):
        load(tmp_path)
