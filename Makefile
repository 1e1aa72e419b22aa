# Quick start:  make run  (set up + main job)   |   make test  (set up + test suite, full and edge)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
EDGE   ?= .venv-edge
# every install is pinned to the complete resolved set in constraints.txt (refresh: make lock)
PIP_C  := -m pip install -q -c constraints.txt
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: setup setup-edge run test test-full test-edge test-isa test-all lint lock
setup: $(VENV)/.installed
setup-edge: $(EDGE)/.installed

$(VENV)/.installed: requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_C) pip
	$(PY) $(PIP_C) -r requirements.txt
	touch $@

# what a device installs: the package with its `edge` extra (LiteRT + ONNX Runtime, no
# TensorFlow, no Keras), plus pytest to prove it
$(EDGE)/.installed: pyproject.toml constraints.txt
	test -x $(EDGE)/bin/python || $(PYTHON) -m venv $(EDGE)
	$(EDGE)/bin/python $(PIP_C) pip
	$(EDGE)/bin/python $(PIP_C) -e ".[edge]" pytest pytest-timeout
	touch $@

run: setup
	$(PY) -m pipeline run

test: test-full test-edge

test-full: setup
	$(PY) -m pytest -m "not slow" --durations=15

# the quick suite with other CPUs' float kernels (oneDNN capped at AVX2, as on AMD EPYC, and
# TensorFlow's oneDNN graph rewrites off, as on ARM): a test whose pass depends on how a trained
# model's floats land shows up here before it does on a user's machine
test-isa: setup
	ONEDNN_MAX_CPU_ISA=AVX2 TF_ENABLE_ONEDNN_OPTS=0 $(PY) -m pytest -m "not slow" --durations=15

# serving in the edge venv, on files exported by the full venv (tests/edge/conftest.py)
test-edge: setup setup-edge
	FULL_PYTHON=$(abspath $(PY)) $(EDGE)/bin/python -m pytest tests/edge

test-all: setup setup-edge
	$(PY) -m pytest
	FULL_PYTHON=$(abspath $(PY)) $(EDGE)/bin/python -m pytest tests/edge

lint: setup
	$(VENV)/bin/ruff check .

# re-resolve requirements.txt in a fresh venv and pin everything it installed
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -r requirements.txt
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/python -m pip freeze --all; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv
