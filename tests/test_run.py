"""The main job end to end on tiny settings: train -> export (gated) -> report -> summary."""
import json

from pipeline.config import load_config
from pipeline.run import RunConfig, run


def test_quickstart_yaml_spells_out_the_defaults():
    assert load_config(RunConfig, [], "configs/quickstart.yaml") == RunConfig()


def test_main_job_end_to_end_and_rerun_reuses_training(tmp_path, capsys):
    out = tmp_path / "runs" / "tiny"
    args = [f"out={out}", "train.data=digits", "train.model=lenet", "train.model.width=0.5",
            "train.model.activation=relu", "train.epochs=2", "train.verbose=0",
            "formats=tflite_fp32,tflite_int8,onnx", "report_runs=3"]
    result = run(load_config(RunConfig, args))
    for name in ("model.keras", "metrics.json", "config.yaml", "report.md", "report.json",
                 "pareto.png", "export/manifest.json", "export/model_fp32.tflite",
                 "export/model_int8.tflite", "export/model.onnx"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "export/manifest.json").read_text())
    assert all(a["parity"]["passed"] for a in manifest["artifacts"])
    assert result["metrics"]["test_accuracy"] > 0.5
    printed = capsys.readouterr().out
    assert "[1/3] train" in printed and "[3/3] report" in printed
    assert f"--runs {out.parent}" in printed and "streamlit run app.py" in printed

    mtime = (out / "model.keras").stat().st_mtime
    run(load_config(RunConfig, args))
    assert "reusing it" in capsys.readouterr().out
    assert (out / "model.keras").stat().st_mtime == mtime
