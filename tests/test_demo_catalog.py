"""The demo's plain-Python parts: finding artifacts in run folders, the runs-root choice, and
the committed sample images (reproducible from samples/make_samples.py)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.demo.catalog import human_size, parity_line, scan_runs
from serving.demo.settings import RUNS_ENV, DemoError, runs_root
from serving.samples import list_samples
from tests.demo_runs import RUN, make_samples_module

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_scan_finds_runs_at_every_supported_depth(demo_runs_root, tmp_path):
    export = demo_runs_root / RUN / "export"
    root = tmp_path / "runs"
    shutil.copytree(export, root / "a" / "export")                        # <root>/<run>/export
    shutil.copytree(export, root / "group" / "b" / "export")              # <root>/<group>/<run>/export
    (root / "notes").mkdir()                                              # not a run: ignored
    (root / "notes" / "readme.txt").write_text("hi")
    cat = scan_runs(root)
    assert cat.problems == []
    assert [(a.run, a.file, a.format) for a in cat.artifacts] == [
        ("a", "model_fp32.tflite", "tflite_fp32"), ("a", "model_int8_uint8io.tflite", "tflite_int8"),
        ("group/b", "model_fp32.tflite", "tflite_fp32"),
        ("group/b", "model_int8_uint8io.tflite", "tflite_int8")]
    art = cat.artifacts[0]
    assert art.size_bytes == (export / "model_fp32.tflite").stat().st_size and len(art.sha256) == 64
    assert art.parity["top1_agreement"] == 1.0 and art.manifest == (root / "a" / "export" / "manifest.json")
    # a run dir or an export dir given as the root works too
    assert [a.run for a in scan_runs(root / "a").artifacts] == ["a", "a"]
    assert len(scan_runs(root / "a" / "export").artifacts) == 2


def test_broken_manifest_is_a_problem_line_and_files_still_listed(demo_runs_root, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(demo_runs_root / RUN / "export", root / "r" / "export")
    (root / "r" / "export" / "manifest.json").write_text("{not json")
    (root / "r" / "export" / "extra.onnx").write_bytes(b"x")
    cat = scan_runs(root)
    assert len(cat.problems) == 1 and "manifest.json: not valid JSON" in cat.problems[0]
    assert [(a.file, a.format) for a in cat.artifacts] == [
        ("extra.onnx", None), ("model_fp32.tflite", None), ("model_int8_uint8io.tflite", None)]
    assert "not in a manifest" in cat.artifacts[0].label and "no parity figures" in cat.artifacts[0].label


def test_missing_or_empty_root_is_an_empty_catalog(tmp_path):
    assert scan_runs(tmp_path / "nope").artifacts == []
    assert scan_runs(tmp_path).artifacts == [] and scan_runs(tmp_path).problems == []


def test_labels_and_sizes():
    assert human_size(512) == "512 B" and human_size(27_500) == "26.9 KB"
    assert human_size(5 * 2**20) == "5.0 MB" and human_size(3 * 2**30) == "3072.0 MB"
    assert parity_line({}) == "no parity figures"
    assert parity_line({"top1_agreement": 0.98, "max_abs_diff": 0.0123, "passed": False}) == (
        "top-1 agree 0.980, max |dp| 0.012, GATE FAILED")


def test_runs_root_order_argument_env_default(tmp_path):
    env = {RUNS_ENV: str(tmp_path / "env")}
    assert runs_root(["--runs", "/x/runs"], env, "d") == Path("/x/runs")
    assert runs_root(["--runs=/y"], env, "d") == Path("/y")
    assert runs_root([], env, "d") == tmp_path / "env"
    assert runs_root([], {}, tmp_path / "d") == tmp_path / "d"
    with pytest.raises(DemoError, match="--runs needs a folder"):
        runs_root(["--runs"], {}, "d")
    with pytest.raises(DemoError, match="unknown argument '-q'"):
        runs_root(["-q", "tests"], {}, "d")


def test_samples_are_listed_and_reproducible():
    """The committed PNGs are what samples/make_samples.py draws (compared as pixels, so a
    different zlib does not matter)."""
    from serving.samples import SCENES_JSON, read_scenes

    names = list(list_samples(SAMPLES))
    assert names == sorted(names) and "circle.png" in names and len(names) == 11
    scenes = read_scenes(SAMPLES)
    assert sorted(scenes) == ["scene_a.png", "scene_b.png", "scene_c.png"] and set(scenes) <= set(names)
    assert all((SAMPLES / n).stat().st_size < (40_000 if n in scenes else 10_000) for n in names)
    rendered = make_samples_module().render()
    assert rendered.pop(SCENES_JSON) == (SAMPLES / SCENES_JSON).read_bytes()
    assert sorted(rendered) == names
    for name, data in rendered.items():
        committed = np.asarray(Image.open(SAMPLES / name))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), committed), name


def test_the_page_opens_on_the_file_the_report_recommends(demo_runs_root, tmp_path):
    import json

    root = tmp_path / "runs"
    shutil.copytree(demo_runs_root / RUN, root / RUN)
    cat = scan_runs(root)
    assert cat.default_index() == 0 and not any(a.recommended for a in cat.artifacts)   # no report yet
    report = {"recommended": {"file": "model_int8_uint8io.tflite"}}
    (root / RUN / "report.json").write_text(json.dumps(report))
    cat = scan_runs(root)
    chosen = cat.artifacts[cat.default_index()]
    assert chosen.file == "model_int8_uint8io.tflite" and "recommended by the report" in chosen.label
    (root / RUN / "report.json").write_text("{broken")
    assert scan_runs(root).default_index() == 0          # an unreadable report is no recommendation


def test_samples_are_offered_only_to_models_with_their_labels():
    from serving.samples import sample_label, samples_for

    every = list_samples(SAMPLES)
    assert sample_label("digit_3.png") == "3" and sample_label("circle.png") == "circle"
    shapes = samples_for(every, ("circle", "square", "triangle", "star", "cross", "ring", "heart"))
    assert set(shapes) == {"circle.png", "square.png", "triangle.png", "star.png", "cross.png", "ring.png"}
    assert set(samples_for(every, tuple(str(d) for d in range(10)))) == {"digit_3.png", "digit_7.png"}
    assert samples_for(every, ("cat", "dog")) == {}


def test_scenes_are_offered_only_to_detectors_of_their_classes():
    from serving.samples import read_scenes, samples_for

    every, scenes = list_samples(SAMPLES), read_scenes(SAMPLES)
    shapes_det = ("circle", "square", "triangle")
    for name, scene in scenes.items():                  # ground truth: 2-3 objects inside the image
        w, h = scene["size"]
        assert 2 <= len(scene["objects"]) <= 3, name
        for obj in scene["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert obj["label"] in shapes_det and 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert list(samples_for(every, shapes_det, "detection", scenes)) == list(scenes)
    two = samples_for(every, ("circle", "square"), "detection", scenes)
    assert set(two) == {"scene_a.png", "scene_b.png"}
    assert samples_for(every, ("cat", "dog"), "detection", scenes) == {}
    assert not set(samples_for(every, shapes_det, "classification", scenes)) & set(scenes)   # never a scene
    assert read_scenes(SAMPLES / "nowhere") == {}
