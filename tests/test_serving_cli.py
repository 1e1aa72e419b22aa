"""manifest.json checks, `python -m serving predict|benchmark` and serving.benchmark.run, on the
real model files of serving_models (LiteRT / ONNX Runtime, nothing mocked)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serving_models import LABELS, artifacts, flip_byte

import serving
from serving import benchmark
from serving.__main__ import main
from serving.manifest import MANIFEST_NAME, read_manifest, sha256_file, verify_file, write_manifest
from serving.metadata import ArtifactError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def art():
    return artifacts()


@pytest.fixture
def export_copy(art, tmp_path):
    dest = tmp_path / "export"
    shutil.copytree(art.export, dest)
    return dest


# --- manifest ------------------------------------------------------------------------------

def test_manifest_lists_every_file_with_hash_and_size(art):
    manifest = read_manifest(art.export)
    rows = {a["file"]: a for a in manifest["artifacts"]}
    assert set(rows) == {p.name for p in art.export.iterdir() if p.name != MANIFEST_NAME}
    for name, row in rows.items():
        assert row["sha256"] == sha256_file(art.export / name)
        assert row["size_bytes"] == (art.export / name).stat().st_size
        verify_file(art.export / name, manifest)


def test_tampered_file_is_refused(art, export_copy, capsys):
    path = export_copy / "model_fp32.tflite"
    flip_byte(path)
    with pytest.raises(ArtifactError, match=r"model_fp32\.tflite: sha256 \w+\.\.\. does not match "
                                            r".*manifest\.json .*changed or damaged"):
        serving.load(path)
    with path.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match=r"model_fp32\.tflite: size \d+ bytes does not match"):
        serving.load(path)
    assert main(["predict", f"model={path}", f"source={art.images[0]}"]) == 2
    assert "does not match" in capsys.readouterr().err


def test_manifest_modes(export_copy, tmp_path):
    path = export_copy / "model.onnx"
    assert serving.load(path, manifest=None).manifest is None
    assert serving.load(path, manifest=export_copy / MANIFEST_NAME).manifest is not None
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "dummy.bin").write_bytes(b"x")
    write_manifest(other, {}, [{"file": "dummy.bin", "format": "none"}])
    with pytest.raises(ArtifactError, match=r"model\.onnx: not listed in .*elsewhere/manifest\.json"):
        serving.load(path, manifest=other)
    (export_copy / "unlisted.onnx").write_bytes(path.read_bytes())      # auto: not listed -> no check
    assert serving.load(export_copy / "unlisted.onnx").manifest is None
    with pytest.raises(ArtifactError, match="no such manifest"):
        serving.load(path, manifest=tmp_path / "missing")


def test_bad_manifests_are_refused(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    with pytest.raises(ArtifactError, match=r"a\.bin: given sha256 'nope' does not match"):
        write_manifest(tmp_path, {}, [{"file": "a.bin", "format": "x", "sha256": "nope"}])
    with pytest.raises(ArtifactError, match=r"b\.bin: listed for the manifest but not a file"):
        write_manifest(tmp_path, {}, [{"file": "b.bin", "format": "x"}])
    with pytest.raises(ArtifactError, match="needs 'file' and 'format'"):
        write_manifest(tmp_path, {}, [{"file": "a.bin"}])
    assert read_manifest(tmp_path) is None
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json: not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"schema": "other", "artifacts": []}))
    with pytest.raises(ArtifactError, match="manifest schema 'other' is not supported"):
        read_manifest(tmp_path)


# --- predict -------------------------------------------------------------------------------

@pytest.fixture
def folder(art, tmp_path):
    """Four real digits (one in a subfolder), one corrupt .jpg and a non-image file."""
    dest = tmp_path / "photos"
    (dest / "sub").mkdir(parents=True)
    for p in art.images[:3]:
        shutil.copy(p, dest / p.name)
    shutil.copy(art.images[3], dest / "sub" / art.images[3].name)
    (dest / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a real jpeg")
    (dest / "notes.txt").write_text("not an image, skipped by suffix")
    return dest


def test_predict_folder_with_one_bad_file(art, folder, capsys):
    rc = main(["predict", f"model={art.export / 'model_int8_uint8io.tflite'}", f"source={folder}",
               "json=true", "topk=3"])
    out, err = capsys.readouterr()
    assert rc == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4 and all(r["label"] in LABELS and len(r["topk"]) == 3 for r in rows)
    assert [Path(r["file"]).name for r in rows] == sorted(p.name for p in art.images[:4])
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {folder / 'broken.jpg'}: ")
    assert "1 of 5 images failed" in err


def test_predict_table_and_glob(art, folder, capsys):
    rc = main(["predict", f"model={art.export / 'model.onnx'}", f"source={folder}/*.png"])
    out, _ = capsys.readouterr()
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["file", "label", "score", "ms"]
    assert len(lines) == 1 + 3     # header + the three top-level PNGs
    runner = serving.load(art.export / "model.onnx")
    for line, p in zip(lines[1:], sorted(folder.glob("*.png"))):
        assert line.split()[:2] == [str(p), runner.classify([p])[0].label]


@pytest.mark.parametrize("args,message", [
    (["predict", "modle=x.tflite", "source=."], "unknown option 'modle' (did you mean: model?)"),
    (["predict", "model=x.tflite"], "source=... is required"),
    (["predict", "model=x.tflite", "source=/nowhere/at/all"], "source=/nowhere/at/all: no such file"),
    (["predikt"], "unknown command 'predikt' (did you mean: predict?)"),
    (["benchmark", "model=m.tflite", "runs=0"], "need runs >= 1"),
    (["benchmark", "model=m.pt"], "m.pt: unsupported model file suffix '.pt'"),
    (["benchmark", "model=m.tflite", "kernels=builtn"], "kernels: 'builtn' is not one of xnnpack, builtin, "
                                                        "reference (did you mean: builtin?)"),
    (["benchmark", "model=m.onnx", "kernels=builtin"], "m.onnx is not a .tflite file"),
])
def test_cli_errors_are_one_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.tflite").write_bytes(b"")
    (tmp_path / "m.pt").write_bytes(b"")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_cli_entry_point_runs_as_a_module(art):
    out = subprocess.run([sys.executable, "-m", "serving", "predict",
                          f"model={art.export / 'model_fp32.tflite'}", f"source={art.images[0]}",
                          "json=true"], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["file"] == str(art.images[0])


# --- benchmark -----------------------------------------------------------------------------

FIELDS = {"model", "format", "backend", "kernels", "task", "input_dtype", "file_size_bytes", "threads",
          "batch", "runs", "warmup", "load_ms", "latency_ms", "invoke_ms", "overhead_ms", "overhead_pct",
          "throughput_ips", "peak_rss_mb", "machine"}


@pytest.mark.parametrize("name,batch", [("model_int8.tflite", 1), ("model.onnx", 3),
                                        ("model_fp32_batch1.tflite", 2)])
def test_benchmark_reports_every_field(art, name, batch):
    r = benchmark.run(art.export / name, runs=8, warmup=2, batch=batch, progress=False)
    assert set(r) == FIELDS
    lat, inv = r["latency_ms"], r["invoke_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert 0 < inv["mean"] <= lat["mean"]          # raw invoke is inside end-to-end
    assert r["overhead_ms"] == pytest.approx(lat["mean"] - inv["mean"])
    assert 0 <= r["overhead_pct"] < 100
    assert r["file_size_bytes"] == (art.export / name).stat().st_size
    assert r["threads"] == 1 and r["batch"] == batch and r["peak_rss_mb"] > 0
    assert r["throughput_ips"] == pytest.approx(batch * 1e3 / lat["mean"], rel=1e-6)
    assert name in benchmark.format_table([r])
    assert r["kernels"] == ("xnnpack" if name.endswith(".tflite") else None)


def test_benchmark_on_litert_builtin_kernels(art, capsys):
    rc = main(["benchmark", f"model={art.export / 'model_int8.tflite'}", "runs=3", "warmup=1",
               "kernels=builtin"])
    assert rc == 0
    assert "tflite (builtin)" in capsys.readouterr().out


def test_benchmark_cli_json_and_out(art, tmp_path, capsys):
    out = tmp_path / "bench" / "result.json"
    rc = main(["benchmark", f"model={art.export / 'model_fp32.tflite'}", "runs=5", "warmup=1",
               "threads=1", "json=true", f"out={out}"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == FIELDS and printed["runs"] == 5
    saved = json.loads(out.read_text())
    assert saved["config"]["runs"] == 5 and set(saved["result"]) == FIELDS


def test_bench_script_writes_table_json_and_plot(art, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("model_int8.tflite", "model.onnx"):
        shutil.copy(art.export / name, models / name)
    out = subprocess.run([sys.executable, "bench/serving_overhead.py", f"source={models}", "runs=3",
                          "warmup=1", f"out={tmp_path / 'res'}"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "model_int8.tflite" in out.stdout and "overhead" in out.stdout
    saved = json.loads((tmp_path / "res.json").read_text())
    assert [Path(r["model"]).name for r in saved["results"]] == ["model.onnx", "model_int8.tflite"]
    assert (tmp_path / "res.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
