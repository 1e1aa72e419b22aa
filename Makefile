# Quick start:  make run  (set up + main job)   |   make test  (set up + test suite, full and edge)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
EDGE   ?= .venv-edge
MP     ?= .venv-mediapipe
# every install is pinned to the complete resolved set in constraints.txt (refresh: make lock)
PIP_C  := -m pip install -q -c constraints.txt
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: setup setup-edge setup-mediapipe run test test-full test-edge test-isa test-all lint lock
setup: $(VENV)/.installed $(MP)/.installed
setup-edge: $(EDGE)/.installed
setup-mediapipe: $(MP)/.installed

# requirements-nodeps.txt: --no-deps, so tflite-support's protobuf<4 pin cannot replace protobuf 7
$(VENV)/.installed: requirements.txt requirements-nodeps.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_C) pip
	$(PY) $(PIP_C) -r requirements.txt
	$(PY) $(PIP_C) --no-deps -r requirements-nodeps.txt
	touch $@

# MediaPipe Tasks for the export gate (pipeline.export.mediapipe_check): its own venv, since its
# absl-py ~=2.3 pin conflicts with tensorflow-model-optimization's ~=1.2; no TensorFlow in it
$(MP)/.installed: requirements-mediapipe.txt constraints-mediapipe.txt
	test -x $(MP)/bin/python || $(PYTHON) -m venv $(MP)
	$(MP)/bin/python -m pip install -q -c constraints-mediapipe.txt pip
	$(MP)/bin/python -m pip install -q -c constraints-mediapipe.txt -r requirements-mediapipe.txt
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

# pytest-xdist: WORKERS processes, each test file on one of them (its module fixtures built once);
# a session fixture is built once per worker that needs it. Much of the suite is single-threaded
# (tracing, conversion, subprocess start-up), so 2 workers on 2 cores: 17 min 56 s here where one
# took 28 min 14 s. (--dist loadgroup with the files sharing a session fixture grouped on one
# worker was no faster: 22 min 26 s against loadfile's 22 min 20 s on a slower day.) WORKERS=0:
# one process.
WORKERS ?= 2
XDIST   := -n $(WORKERS) --dist loadfile

test-full: setup
	$(PY) -m pytest -m "not slow" $(XDIST) --durations=15

# the quick suite with other CPUs' float kernels (oneDNN capped at AVX2, as on AMD EPYC, and
# TensorFlow's oneDNN graph rewrites off, as on ARM): a test whose pass depends on how a trained
# model's floats land shows up here before it does on a user's machine
test-isa: setup
	ONEDNN_MAX_CPU_ISA=AVX2 TF_ENABLE_ONEDNN_OPTS=0 $(PY) -m pytest -m "not slow" $(XDIST) --durations=15

# serving in the edge venv, on files exported by the full venv (tests/edge/conftest.py)
test-edge: setup setup-edge
	FULL_PYTHON=$(abspath $(PY)) $(EDGE)/bin/python -m pytest tests/edge

test-all: setup setup-edge
	$(PY) -m pytest $(XDIST)
	FULL_PYTHON=$(abspath $(PY)) $(EDGE)/bin/python -m pytest tests/edge

lint: setup
	$(VENV)/bin/ruff check .

# re-resolve requirements.txt in a fresh venv and pin everything it installed
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -r requirements.txt
	.lock-venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/python -m pip freeze --all; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -r requirements-mediapipe.txt
	{ sed -n '/^#/p' constraints-mediapipe.txt; .lock-venv/bin/python -m pip freeze --all; } > constraints-mediapipe.txt.new
	mv constraints-mediapipe.txt.new constraints-mediapipe.txt
	rm -rf .lock-venv
