"""pipeline report: benchmarks every exported file through serving and writes md/json/png."""
from __future__ import annotations

import json
import shutil

from pipeline.__main__ import main
from pipeline.report import pareto_front, recommend
from serving.machine import machine_info


def _copy(digits_run, digits_export, dest):
    dest.mkdir()
    for name in ("model.keras", "config.yaml"):
        shutil.copy(digits_run / name, dest / name)
    shutil.copytree(digits_export.out_dir, dest / "export")
    return dest


def test_report_writes_md_json_png(digits_run, digits_export, tmp_path):
    run = _copy(digits_run, digits_export, tmp_path / "run")
    assert main(["report", str(run), "runs=3", "warmup=1", "verbose=false"]) == 0
    data = json.loads((run / "report.json").read_text())
    files = [a["file"] for a in digits_export.artifacts]
    assert [r["file"] for r in data["rows"]] == files
    for row, art in zip(data["rows"], digits_export.artifacts):
        assert row["p50_ms"] > 0 and row["invoke_ms"] > 0
        assert row["size_kb"] == art["size_bytes"] / 1024
        assert row["accuracy"] == art["parity"]["accuracy"] and row["gate_passed"] is True
    assert data["keras"]["format"] == "keras" and data["keras"]["p50_ms"] > 0
    assert data["benchmark"]["threads"] == 1
    assert set(data["pareto_front"]) <= set(files) and data["pareto_front"]
    md = (run / "report.md").read_text()
    assert "| variant | file | format | size KB | gzip KB | p50 ms |" in md and all(f in md for f in files)
    assert all(r["variant"] == "source" and r["isa"] and r["gzip_kb"] > 0 for r in data["rows"])
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    machine = data["benchmark"]["machine"]
    assert machine == machine_info() and machine["isa"] and "onnxruntime" in machine["runtimes"]
    rec = data["recommended"]["file"]
    assert rec in files and f"Recommended on this machine: `{rec}`" in md
    assert "Measured on " in md and "int8 dot-product instructions: " in md
    # MediaPipe Tasks' verdict per file: grayscale digits are not for MediaPipe; ONNX is not asked
    assert "| gate | MediaPipe | GPU delegate / ORT mobile | ISA |" in md
    cells = [a["parity"].get("mediapipe") for a in digits_export.artifacts]
    assert [r["mediapipe"] for r in data["rows"]] == cells
    for r in data["rows"]:
        line = next(line for line in md.splitlines() if f"| {r['file']} |" in line)
        want = "| pass | n/a: MediaPipe needs 3 channels" if r["file"].endswith(".tflite") else "| pass | - |"
        assert want in line, line
        # where a phone's accelerator would run it (pipeline.export.placement), from the manifest
        want = "| full |" if r["file"].endswith(".tflite") else "| ORT mobile: NNAPI "
        assert want in line and r["accelerator"] in line, line


def _r(file, p50, size, acc, passed=True):
    return {"file": file, "format": file, "p50_ms": p50, "size_kb": size, "accuracy": acc,
            "gate_passed": passed}


def test_recommend_is_the_fastest_file_that_passed_within_a_point_of_keras():
    rows = [_r("fp32", 1.2, 900, 0.95), _r("int8", 0.8, 250, 0.945), _r("fp16", 1.1, 450, 0.95)]
    assert recommend(rows, 0.95)["file"] == "int8"              # 0.5 point lost: allowed
    rows[1]["accuracy"] = 0.93                                  # 2 points lost: not allowed
    rec = recommend(rows, 0.95)
    assert rec["file"] == "fp16" and "int8 is faster but less accurate" in rec["why"]
    rows[2]["gate_passed"] = False
    assert recommend(rows, 0.95)["file"] == "fp32"
    assert recommend([_r("a", 1.0, 10, 0.5, passed=False)], 0.9) is None
    assert recommend([_r("a", 1.0, 20, None), _r("b", 1.0, 10, None)], None)["file"] == "b"   # tie: smaller


def test_report_refuses_a_tampered_file(digits_run, digits_export, tmp_path, capsys):
    run = _copy(digits_run, digits_export, tmp_path / "run")
    target = run / "export" / "model_fp16.tflite"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0x01
    target.write_bytes(bytes(data))
    assert main(["report", f"run={run}", "runs=2", "keras=false", "verbose=false"]) == 1
    err = capsys.readouterr().err
    assert "model_fp16.tflite: sha256" in err and "does not match" in err
    assert not (run / "report.json").exists()


def test_report_without_export_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: run={tmp_path}: no export/manifest.json found; run `python -m pipeline export "
        f"{tmp_path}` first")


def test_pareto_front():
    rows = [{"file": "a", "size_kb": 10, "p50_ms": 1.0}, {"file": "b", "size_kb": 5, "p50_ms": 2.0},
            {"file": "c", "size_kb": 20, "p50_ms": 3.0}, {"file": "d", "size_kb": 5, "p50_ms": 2.0}]
    assert pareto_front(rows) == ["a", "b", "d"]
