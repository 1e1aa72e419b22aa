"""The project installs as a package, and every install is pinned by constraints.txt.

constraints.txt is the complete resolved set (make lock); requirements.txt (the dev venv) and
pyproject.toml's dependencies and extras must all be satisfiable by it, so `make setup`,
`pip install -c constraints.txt .[edge]` and CI install identical versions."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_requirements_are_pinned_to_the_lock():
    pins = _pins()
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        assert str(req.specifier).startswith("=="), f"requirements.txt: {line} is not pinned"
        assert pins.get(canonicalize_name(req.name)) == str(req.specifier)[2:], line


def test_every_declared_dependency_is_in_the_lock_and_satisfied_by_it():
    project = _pyproject()["project"]
    pins = _pins()
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += [r for r in extra if not r.startswith(project["name"])]
    assert {"tensorflow", "onnxruntime", "ai-edge-litert", "streamlit"} <= {
        canonicalize_name(Requirement(r).name) for r in declared}
    for line in declared:
        req = Requirement(line)
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req.name} is declared in pyproject.toml but not in constraints.txt"
        assert req.specifier.contains(pin, prereleases=True), f"{line} does not admit the locked {pin}"


def test_this_venv_has_the_locked_versions():
    """What `make setup` installed is what the lock says (a package the lock names at another
    version means the venv was set up without constraints.txt)."""
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    wrong = {n: (installed[n], v) for n, v in _pins().items() if n in installed and installed[n] != v}
    assert not wrong, f"installed vs locked: {wrong}"


def test_edge_extra_has_no_tensorflow():
    project = _pyproject()["project"]
    edge = project["optional-dependencies"]["edge"] + project["dependencies"]
    names = {canonicalize_name(Requirement(r).name) for r in edge}
    assert names.isdisjoint({"tensorflow", "keras", "tf-keras", "onnx", "tf2onnx"})


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=300,
                       cwd=out)
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = out.glob("cnn_mobile_pipeline-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_every_package_and_the_console_scripts(wheel):
    names = set(wheel.namelist())
    for pkg in ("models", "pipeline", "pipeline/data", "pipeline/export", "serving", "serving/backends",
                "serving/demo"):
        assert f"{pkg}/__init__.py" in names, pkg
    expected = {p.relative_to(REPO).as_posix() for d in ("models", "pipeline", "serving")
                for p in (REPO / d).rglob("*.py")}
    assert expected <= names, sorted(expected - names)
    assert "serving/nms.onnx" in names                   # package data: serving.nms's graph
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    (ep,) = [n for n in names if n.endswith("entry_points.txt")]
    scripts = wheel.read(ep).decode()
    for line in ("cnn-pipeline = pipeline.__main__:main", "cnn-serve = serving.__main__:main"):
        assert line in scripts


def _pinned(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            assert str(req.specifier).startswith("=="), f"{path.name}: {line} is not pinned"
            out[canonicalize_name(req.name)] = str(req.specifier)[2:]
    return out


def test_no_deps_and_mediapipe_requirements_are_pinned_apart():
    """tflite-support (metadata writers) goes into the full venv with --no-deps, pinned in the
    lock; MediaPipe gets a venv of its own, pinned by constraints-mediapipe.txt, with no
    TensorFlow in it (its absl-py pin conflicts with tensorflow-model-optimization's)."""
    pins = _pins()
    for name, version in _pinned(REPO / "requirements-nodeps.txt").items():
        assert pins.get(name) == version, name
    assert "--no-deps -r requirements-nodeps.txt" in (REPO / "Makefile").read_text()
    mp = _pinned(REPO / "constraints-mediapipe.txt")
    for name, version in _pinned(REPO / "requirements-mediapipe.txt").items():
        assert mp.get(name) == version, name
    assert mp["absl-py"] != pins["absl-py"]     # why it is a venv of its own
    assert not {"tensorflow", "tf-keras", "keras", "protobuf"} & set(mp)
