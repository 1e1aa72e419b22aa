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

from pipeline.export.formats import FORMATS
from pipeline.tasks import TASKS, get_task
from tests.conftest import NOT_IN_HARNESS

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
    assert row["parity"]["passed"] and row["parity"]["reasons"] == []
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
