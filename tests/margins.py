"""Bars on freshly trained models' floats, with their measured margins.

A test that asserts a threshold on what a freshly trained model (or a file converted from one)
answers depends on how its floats land, and those move with the seed and with the CPU's kernels
(oneDNN picks AVX2, AVX-512 or AMX code; an AVX2-only AMD CPU rounds otherwise). Such a test:
- trains with `seed()` (CNN_TEST_SEED moves every such seed at once), and
- states its bar with `at_least` / `at_most` / `gate_passed` (never a bare `assert x >= 0.97`).
With CNN_MARGINS_OUT set, every check appends {test, check, value, bar, op} to that JSON-lines
file; `bench/test_margins.py` runs the test files that import this module over seeds x
oneDNN ISAs and prints each bar next to the spread it measured (README, "Tests"): a bar is
set from data, not hope.
"""
from __future__ import annotations

import json
import os
from typing import Any

SEED = int(os.environ.get("CNN_TEST_SEED", "0"))


def seed(base: int = 0) -> int:
    """The seed of a fixture whose default is `base`, moved by CNN_TEST_SEED."""
    return base + SEED


def _record(check: str, value: float, bar: float, op: str) -> None:
    out = os.environ.get("CNN_MARGINS_OUT")
    if not out:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
    row = {"test": test, "check": check, "value": float(value), "bar": float(bar), "op": op,
           "seed": SEED, "isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native")}
    with open(out, "a", encoding="utf-8") as f:   # one short line: appends do not interleave
        f.write(json.dumps(row) + "\n")


def at_least(check: str, value: float, bar: float) -> None:
    _record(check, value, bar, ">=")
    assert value >= bar, f"{check}: {value:.4f} < {bar}"


def at_most(check: str, value: float, bar: float) -> None:
    _record(check, value, bar, "<=")
    assert value <= bar, f"{check}: {value:.4f} > {bar}"


def gate_passed(art: dict[str, Any], check: str = "") -> None:
    """A manifest row's parity gate passed; its numbers are recorded against the gate's bars."""
    p = art["parity"]
    name = check or art.get("format") or art.get("file", "?")
    if "top1_agreement" in p and p.get("min_top1_agreement") is not None:
        _record(f"{name} gate agreement", p["top1_agreement"], p["min_top1_agreement"], ">=")
    if p.get("max_accuracy_drop") is not None and "accuracy_drop" in p:
        _record(f"{name} gate accuracy drop", p["accuracy_drop"], p["max_accuracy_drop"], "<=")
    for key in ("map50_drop", "map_drop"):   # detection: mAP drops against the gate's bar
        if key in p and p.get("max_map_drop") is not None:
            _record(f"{name} gate {key}", p[key], p["max_map_drop"], "<=")
    assert p["passed"], f"{name}: {p.get('reasons')}"
