"""One harness over the task axis: for every task of pipeline.tasks.TASKS, a tiny model is
really trained (pipeline.train), exported to every format the task takes (pipeline.export, the
parity gate included), served (serving.load) and reported (pipeline.report) - the same checks
for each task, parametrized over TASKS x its formats.

The numbers are not quality bars (a few epochs on tiny data): the gates' lossy thresholds are
opened so that a barely trained model's near-ties cannot fail the run on another CPU; what is
asserted is the path and its invariants - above all that metrics.json's test figure IS the
number the gate measures for the Keras model (the files are judged against what was advertised).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from margins import gate_passed

from pipeline.export.formats import FORMATS
from pipeline.tasks import TASKS, get_task
from tests.conftest import INTEGER_IO, NOT_IN_HARNESS

CASES = [(t, f) for t in TASKS for f in TASKS[t].formats if f not in NOT_IN_HARNESS]


@pytest.mark.parametrize("task", list(TASKS))
def test_metrics_json_reports_what_the_gate_measures(task_runs, task):
    """The test figure of metrics.json (training-time evaluation) and the gate's Keras figure on
    the same test split are one number: the same decoding (models.decoder for detectors)."""
    run, rows = task_runs[task].run, task_runs[task].rows
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["task"] == task
    parity = rows["tflite_fp32"]["parity"]
    assert parity["samples"] == saved["num_test"]          # the whole test split
    if task == "detection":
        assert parity["detections_keras"] > 0                # a real comparison, not 0 == 0
        assert saved["test_map50"] == pytest.approx(parity["map50_keras"], abs=0.005)
        assert saved["test_map"] == pytest.approx(parity["map_keras"], abs=0.005)
    else:   # batches of another size may round a near-tie the other way: one image at most
        assert saved["test_accuracy"] == pytest.approx(parity["accuracy_keras"], abs=1.01 / saved["num_test"])


@pytest.mark.parametrize("task,fmt", CASES)
def test_every_file_serves_and_passed_its_gate(task_runs, task, fmt):
    import serving
    from serving.tflite_inspect import op_names

    run, metrics, rows = task_runs[task].run, task_runs[task].result.metrics, task_runs[task].rows
    row = rows[fmt]
    gate_passed(row, f"{task} {fmt}")
    assert row["parity"]["reasons"] == []
    if task == "detection":   # each file is held to its own bar: float 1 point, lossy the (opened) int8 one
        assert row["parity"]["max_map_drop"] == (1.0 if FORMATS[fmt].lossy else 0.01)
    path = run / "export" / row["file"]
    runner = serving.load(path)                              # checks the manifest's sha256 too
    assert runner.task == task and runner.metadata["format"] == fmt
    assert runner.labels == tuple(metrics["per_class_ap" if task == "detection" else "per_class_accuracy"])
    images = np.zeros((2, *runner.contract.input_shape), np.uint8)
    answer = runner.run_batch(images)
    if task == "detection":
        assert len(answer) == 2 and all(b.shape[1:] == (4,) for b, _, _ in answer)
    else:
        assert answer.shape == (2, len(runner.labels))
        np.testing.assert_allclose(answer.sum(1), 1.0, atol=0.02)
    if path.suffix == ".tflite":   # builtin ops only: a Flex or custom op would not load on a device
        assert not [o for o in op_names(path.read_bytes()) if o.startswith("CUSTOM") or "FLEX" in o]
        # ... and MediaPipe Tasks accepted the file and answered as serving does (the gate's check)
        assert row["parity"]["mediapipe"] == "pass", row["parity"]["mediapipe"]
        assert row["parity"]["mediapipe_samples"] == min(row["parity"]["samples"], 200)
        if INTEGER_IO[task]:   # uint8 camera pixels straight in: scale 1, zero point 0
            inp = runner.metadata["input"] if fmt == "tflite_int8" else {"scale": 1.0, "zero_point": 0}
            assert (inp["scale"], inp["zero_point"]) == (1.0, 0), inp
    else:
        assert "mediapipe" not in row["parity"]


@pytest.mark.parametrize("task", list(TASKS))
def test_the_report_uses_the_task_columns(task_runs, task):
    from pipeline.report import ReportConfig, report

    run, rows = task_runs[task].run, task_runs[task].rows
    rep = report(ReportConfig(run=str(run), runs=3, warmup=1, verbose=False))
    assert rep["task"] == task and {r["format"] for r in rep["rows"]} == set(rows)
    md = (run / "report.md").read_text()
    for header, _, _ in get_task(task).report_columns:
        assert f" {header} |" in md
    assert (run / "pareto.png").stat().st_size > 3000


# the README's MediaPipe Tasks examples ("Use the files on a device"), by the class they create
README_EXAMPLE = {"classification": "vision.ImageClassifier", "detection": "vision.ObjectDetector"}


def _readme_example(task: str) -> str:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (code,) = [b for b in blocks if f"{README_EXAMPLE[task]}.create_from_options" in b]
    return code


@pytest.mark.parametrize("task", list(TASKS))
def test_the_readme_mediapipe_example_answers_like_serving(task_runs, task, tmp_path):
    """A freshly exported .tflite in MediaPipe Tasks, through the README's own example (run in
    the MediaPipe venv, the file and image paths swapped in): the same top-1 label and score /
    the same boxes, classes and scores as serving gives for the same image file."""
    import subprocess
    from pathlib import Path

    from PIL import Image

    import serving
    from pipeline import mediapipe_check

    exe = mediapipe_check.python()
    assert exe is not None, "no .venv-mediapipe: make setup makes it"
    run, rows = task_runs[task].run, task_runs[task].rows
    model = run / "export" / rows["tflite_fp32"]["file"]
    runner = serving.load(model)
    h, w = runner.contract.size   # an image at the model's size: no resize on either side
    image = tmp_path / "image.png"
    samples = Path(__file__).resolve().parents[1] / "samples"
    scene = Image.open(samples / ("scene_a.png" if task == "detection" else "circle.png"))
    scene.convert("RGB").resize((w, h), Image.NEAREST).save(image)
    code = _readme_example(task)
    for old in ("runs/quickstart/export/model_int8.tflite", "runs/quickstart-det/export/model_fp32.tflite",
                "samples/circle.png", "samples/scene_a.png"):
        code = code.replace(f'"{old}"', f'"{image if old.startswith("samples") else model}"')
    code = code.replace("score_threshold=0.3", "score_threshold=0.0")   # every box the file keeps
    proc = subprocess.run([str(exe), "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split() for line in proc.stdout.strip().splitlines()]
    if task == "classification":
        (label, score), *_ = lines
        (result,) = runner.classify([image])
        assert label == result.label and float(score) == pytest.approx(result.score, abs=2e-3)
        return
    (found,) = runner.detect([image])
    ours = [(lab, float(sc), np.round(b).astype(int))
            for lab, sc, b in zip(found.labels, found.scores, found.boxes)]
    theirs = [(lab, float(sc), np.array([int(x), int(y), int(x) + int(bw), int(y) + int(bh)]))
              for lab, sc, x, y, bw, bh in lines]
    assert len(ours) == len(theirs) > 0
    for lab, sc, box in ours:   # MediaPipe truncates origin and size to whole pixels, so a far
        # corner may land 2 pixels from our rounded one (seen: x1 64 vs 63, y1 28 vs 26)
        same = [i for i, (tl, ts, tb) in enumerate(theirs)
                if tl == lab and abs(ts - sc) <= 2e-3 and np.abs(tb - box).max() <= 2]
        assert same, (lab, sc, box, theirs)
        theirs.pop(same[0])
