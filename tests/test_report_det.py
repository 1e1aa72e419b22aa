"""pipeline report and serving benchmark on a detector: the tiny trained SSD of the task harness
(conftest.task_runs: every detection format, decoding + NMS inside), really benchmarked."""
from __future__ import annotations

import json

import pytest

from pipeline.__main__ import main
from pipeline.export.formats import FORMATS
from pipeline.report import recommend
from serving.machine import machine_info


@pytest.fixture(scope="session")
def det_report_run(task_runs):
    return task_runs["detection"].run


def test_serving_benchmark_times_a_detector_end_to_end(det_report_run):
    from serving.benchmark import format_table, run

    result = run(det_report_run / "export" / "model_fp32.tflite", runs=5, warmup=1, progress=False)
    assert result["task"] == "detection" and result["backend"] == "tflite"
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] and 0 < result["invoke_ms"]["p50"] <= lat["max"]
    keras = run(det_report_run / "model.keras", runs=2, warmup=1, manifest=None, progress=False)
    assert keras["task"] == "detection" and keras["latency_ms"]["p50"] > 0
    assert "model_fp32.tflite" in format_table([result, keras])


def test_report_on_a_detector_has_map_columns(det_report_run):
    run = det_report_run
    assert main(["report", str(run), "runs=3", "warmup=1", "verbose=false"]) == 0
    data = json.loads((run / "report.json").read_text())
    arts = json.loads((run / "export" / "manifest.json").read_text())["artifacts"]
    assert data["task"] == "detection"
    assert [r["file"] for r in data["rows"]] == [a["file"] for a in arts]
    for row, art in zip(data["rows"], arts):
        p = art["parity"]
        assert row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"]
        assert row["size_kb"] == art["size_bytes"] / 1024
        assert (row["map50"], row["map"], row["map50_keras"], row["gate_passed"]) == (
            p["map50"], p["map"], p["map50_keras"], True)
        assert row["max_map_drop"] == (1.0 if FORMATS[row["format"]].lossy else 0.01)   # LOOSE_GATE
    assert data["keras"]["format"] == "keras" and data["keras"]["map50"] == arts[0]["parity"]["map50_keras"]
    md = (run / "report.md").read_text()
    assert "| size KB | p50 ms | p90 ms | invoke ms | mAP@.5 | mAP@[.5:.95] |" in md
    # accelerator placement (pipeline.export.placement): NMS is a CPU op of every detector file
    assert "| MediaPipe | GPU delegate / ORT mobile | ISA |" in md
    for row in data["rows"]:
        line = next(line for line in md.splitlines() if f"| {row['file']} |" in line)
        want = "ops on CPU (NON_MAX_SUPPRESSION_V5, " if row["file"].endswith(".tflite") else \
            "; unsupported: NonMaxSuppression, "
        assert want in row["accelerator"] and row["accelerator"] in line, line
    assert "including the decoding + NMS inside each file" in md
    assert data["benchmark"]["machine"] == machine_info() and "Measured on " in md
    rec = data["recommended"]
    assert rec["file"] in [a["file"] for a in arts] and f"Recommended on this machine: `{rec['file']}`" in md
    assert "of Keras' mAP" in rec["why"]
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _d(file, p50, map50, drop=0.01, passed=True, keras=0.9):
    return {"file": file, "format": file, "task": "detection", "p50_ms": p50, "size_kb": 100.0,
            "map50": map50, "map": map50 - 0.2, "map50_keras": keras, "map_keras": keras - 0.2,
            "max_map_drop": drop, "gate_passed": passed}


def test_recommend_for_detectors_is_the_fastest_within_its_gate_of_keras_map():
    rows = [_d("fp32", 2.0, 0.9), _d("int8", 1.0, 0.88, drop=0.03), _d("dyn", 0.9, 0.86, drop=0.03)]
    rec = recommend(rows, None)
    assert rec["file"] == "int8" and "within 3 point(s) of Keras' mAP" in rec["why"]
    assert "dyn is faster" in rec["why"]                      # 4 points lost: outside its gate
    rows[1]["gate_passed"] = False
    assert recommend(rows, None)["file"] == "fp32"
