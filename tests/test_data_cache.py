"""The generated-data cache (pipeline.data.cache): a hit gives the very arrays the generator
draws, any change of key or generator source draws afresh, a damaged entry is drawn again, and
CNN_PIPELINE_CACHE=off turns it off."""
import numpy as np
import pytest

from pipeline.data import DataConfig, load_dataset
from pipeline.data.cache import cache_dir, cached


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_PIPELINE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def counting(arrays):
    calls = []

    def make():
        calls.append(1)
        return arrays
    return make, calls


def test_hit_returns_the_same_arrays_without_drawing(cache, tmp_path):
    src = tmp_path / "gen.py"
    src.write_text("v = 1\n")
    make, calls = counting((np.arange(6, dtype=np.uint8).reshape(2, 3), np.array([1, 2], np.int32)))
    first = cached("t", ("cfg", 0), [src], make)
    second = cached("t", ("cfg", 0), [src], make)
    assert len(calls) == 1 and len(list(cache.glob("t-*.npz"))) == 1
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_other_key_or_edited_generator_draws_again(cache, tmp_path):
    src = tmp_path / "gen.py"
    src.write_text("v = 1\n")
    make, calls = counting((np.zeros(3),))
    cached("t", ("cfg", 0), [src], make)
    cached("t", ("cfg", 1), [src], make)
    src.write_text("v = 2\n")
    cached("t", ("cfg", 0), [src], make)
    assert len(calls) == 3


def test_damaged_entry_is_drawn_again(cache, tmp_path):
    src = tmp_path / "gen.py"
    src.write_text("v = 1\n")
    make, calls = counting((np.ones(4),))
    cached("t", "k", [src], make)
    (entry,) = cache.glob("t-*.npz")
    entry.write_bytes(entry.read_bytes()[:20])
    (out,) = cached("t", "k", [src], make)
    assert len(calls) == 2 and out.tolist() == [1.0] * 4


def test_off_switch(monkeypatch, tmp_path):
    monkeypatch.setenv("CNN_PIPELINE_CACHE", "off")
    assert cache_dir() is None
    make, calls = counting((np.ones(1),))
    cached("t", "k", [], make)
    cached("t", "k", [], make)
    assert len(calls) == 2


def test_shapes_from_the_cache_equal_a_fresh_draw(cache, monkeypatch):
    from pipeline.config import load_config

    data = load_config(DataConfig, ["source=shapes", "shapes.per_class=3"])
    warm = load_dataset(data, image_size=(64, 64), channels=3)        # draws and stores
    assert len(list(cache.glob("shapes-*.npz"))) == 1
    hit = load_dataset(data, image_size=(64, 64), channels=3)
    monkeypatch.setenv("CNN_PIPELINE_CACHE", "off")
    fresh = load_dataset(data, image_size=(64, 64), channels=3)
    for split in ("train", "val", "test"):
        for got in (getattr(hit, split), getattr(fresh, split)):
            np.testing.assert_array_equal(got.images, getattr(warm, split).images)
            np.testing.assert_array_equal(got.labels, getattr(warm, split).labels)
