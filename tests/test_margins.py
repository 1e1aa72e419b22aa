"""tests/margins.py records every bar on a trained model's output with its value, and
bench/test_margins.py turns those records into headroom and spread (hand-computed values)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from margins import at_least, at_most, gate_passed

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_test_margins", ROOT / "bench" / "test_margins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bars_record_their_values_and_fail_on_the_wrong_side(tmp_path, monkeypatch):
    log = tmp_path / "m.jsonl"
    monkeypatch.setenv("CNN_MARGINS_OUT", str(log))
    at_least("agreement", 0.98, 0.97)
    with pytest.raises(AssertionError, match=r"^agreement: 0.9600 < 0.97$"):
        at_least("agreement", 0.96, 0.97)
    at_most("loss ratio", 0.5, 0.7)
    with pytest.raises(AssertionError, match=r"^loss ratio: 0.8000 > 0.7$"):
        at_most("loss ratio", 0.8, 0.7)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["check"], r["value"], r["bar"], r["op"]) for r in rows] == [
        ("agreement", 0.98, 0.97, ">="), ("agreement", 0.96, 0.97, ">="),
        ("loss ratio", 0.5, 0.7, "<="), ("loss ratio", 0.8, 0.7, "<=")]
    assert all(r["test"].startswith("tests/test_margins.py::test_bars_record") for r in rows)


def test_gate_passed_records_the_gates_own_numbers(tmp_path, monkeypatch):
    log = tmp_path / "m.jsonl"
    monkeypatch.setenv("CNN_MARGINS_OUT", str(log))
    gate_passed({"format": "tflite_int8", "parity": {
        "top1_agreement": 0.99, "min_top1_agreement": 0.97, "accuracy_drop": 0.01, "max_accuracy_drop": 0.02,
        "passed": True}})
    gate_passed({"format": "onnx", "parity": {"map50_drop": 0.0, "map_drop": 0.004, "max_map_drop": 0.01,
                                              "passed": True}})
    with pytest.raises(AssertionError, match=r"tflite_fp16: \['top-1 agreement"):
        gate_passed({"format": "tflite_fp16", "parity": {"top1_agreement": 0.9, "min_top1_agreement": 0.99,
                                                         "passed": False, "reasons": ["top-1 agreement"]}})
    checks = [(r["check"], r["value"], r["bar"]) for r in map(json.loads, log.read_text().splitlines())]
    assert checks == [("tflite_int8 gate agreement", 0.99, 0.97),
                      ("tflite_int8 gate accuracy drop", 0.01, 0.02),
                      ("onnx gate map50_drop", 0.0, 0.01), ("onnx gate map_drop", 0.004, 0.01),
                      ("tflite_fp16 gate agreement", 0.9, 0.99)]


def test_the_bench_gives_headroom_and_spread_per_check():
    rows = lambda check, op, bar, values: [  # noqa: E731
        {"test": "t::x", "check": check, "op": op, "bar": bar, "value": v, "seed": s, "isa": "native"}
        for s, v in enumerate(values)]
    runs = [{"rows": rows("agree", ">=", 0.9, [0.99, 0.95, 0.97]) + rows("loss", "<=", 0.7, [0.5, 0.6])
             + rows("close", ">=", 0.9, [0.91, 0.95]) + rows("broken", ">=", 0.9, [0.92, 0.89])}]
    table = {t["check"]: t for t in _bench().summarize(runs)}
    assert table["agree"]["worst"] == 0.95 and table["agree"]["spread"] == pytest.approx(0.04)
    assert table["agree"]["headroom"] == pytest.approx(0.05) and table["agree"]["verdict"] == "tight"
    assert table["loss"]["worst"] == 0.6 and table["loss"]["headroom"] == pytest.approx(0.1)
    assert table["loss"]["spread"] == pytest.approx(0.1) and table["loss"]["verdict"] == "tight"
    assert table["close"]["verdict"] == "tight" and table["broken"]["verdict"] == "FAILED"
    one = _bench().summarize([{"rows": rows("agree", ">=", 0.9, [0.99, 0.98])}])[0]
    assert one["verdict"] == "ok"          # headroom 0.08 >= 2 x spread 0.01
