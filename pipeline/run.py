"""`python -m pipeline run`: the main job, on the embedded default data.

    python -m pipeline run                                  # runs/quickstart, -qat, -det
    python -m pipeline run out=runs/mine train.epochs=5 --config configs/quickstart.yaml
    python -m pipeline run compress=none detect=false       # the classifier only

1. train the classifier (pipeline.train) -> 2. export every format under the parity gate
(pipeline.export) -> 3. compress it (pipeline.compress, QAT by default: the best int8 file in
bench/compression.py) and export that run's int8 file -> 4. train the detector (SSD on the
generated shapes_det scenes) -> 5. export it with decoding + NMS inside every file (detection
parity gate) -> 6. report each run (size, latency through the serving runtime, parity, Pareto
plot); then the built-in samples through every exported file (what the demo offers first), and
the command that opens the demo on all of it. Re-running it resumes an interrupted training and
reuses a finished one made with the same options (overwrite=true redoes everything).
No dead end: a file that fails its gate (or cannot be made) is left out of its export and
listed (manifest.json "failed", the report, the summary below); the job goes on with the rest.
A failing int8 file is diagnosed and repaired where it can be (int8.*: pipeline.export.repair).
configs/quickstart.yaml spells out the defaults below.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from models.options import OptionError
from pipeline import rundir
from pipeline.augment import AugmentConfig
from pipeline.compress import CompressConfig, compress
from pipeline.config import to_dict
from pipeline.data import DataConfig
from pipeline.export.config import ALL_FORMATS, GateConfig, Int8Config
from pipeline.export.core import ExportConfig, ExportResult, export, repair_note
from pipeline.export.errors import IncompleteExportError
from pipeline.export.formats import check_request
from pipeline.optim import ScheduleConfig
from pipeline.report import ReportConfig, report
from pipeline.tasks import get_task
from pipeline.train import ModelConfig, TrainConfig, train
from pipeline.train_config import DetectionConfig
from serving.manifest import sha256_file
from serving.runtime import load
from serving.samples import found, list_samples, read_scenes, sample_label, samples_for


def quickstart_training() -> TrainConfig:
    """What the main job trains by default: a few minutes on 2 CPU cores. No augmentation: the
    generator already varies pose, scale, colour and clutter, and standard's random-resized crop
    cost 6 points at this budget (test accuracy 0.917 with it, 0.981 without; with it the demo's
    circle sample came out "hexagon")."""
    return TrainConfig(
        data=DataConfig("shapes"),
        model=ModelConfig("vgg11", options={"width": 0.25, "batch_norm": True}),
        augment=AugmentConfig("none"),
        epochs=10, batch_size=64, optimizer="adamw", lr=0.003, weight_decay=0.0005,
        schedule=ScheduleConfig("cosine", warmup_epochs=1.0))


def quickstart_detector() -> TrainConfig:
    """What the main job trains as its detector: YOLO (models.yolo: PAN-FPN, one anchor point per
    cell, task-aligned assignment) on a quarter-width ResNet-18 at 128 px, on 1500 generated
    scenes of circles, squares and triangles (0-4 per scene), a few minutes on 2 CPU cores.
    Measured on one shared CPU (test mAP@.5 / mAP@[.5:.95]): 0.963 / 0.798 at 16 epochs (0.933 /
    0.760 at 12); at 12 epochs lr 0.003 with cls_weight 0.5 0.822 / 0.646, lr 0.02 0.741 mAP,
    batch 8 0.906 / 0.745; the SSD it replaces (batch 8, lr 0.006, 12 epochs) 0.698 / 0.506 with
    about the same time per epoch. 20 epochs, not 16, for the built-in scenes: at 16, seeds 0-2
    found 7, 8 and 8 of their 8 objects (seed 0 scored a square cut by the border 0.27, under the
    0.3 a user filters at) and test mAP 0.798 / 0.777 / 0.761; at 20, 8/8 for each seed, every
    object scored >= 0.76, and test mAP 0.808 / 0.795 / 0.792, for about 50 s more on a quiet
    2-core CPU. augment=light: the box-aware shift/zoom/colour."""
    return TrainConfig(
        task="detection", data=DataConfig("shapes_det"),
        model=ModelConfig("yolo", options={"backbone": "resnet18", "width": 0.25}),
        augment=AugmentConfig("light"), epochs=20, batch_size=16, optimizer="adamw",
        lr=0.01, weight_decay=0.0005, schedule=ScheduleConfig("cosine", warmup_epochs=1.0),
        detection=DetectionConfig(cls_weight=1.0))


@dataclass(frozen=True)
class CompressStep:
    """The main job's compression of its classifier (`compress=qat`, `compress=none` skips)."""
    SHORTHAND: ClassVar[str] = "method"
    method: Literal["none", "qat", "prune", "prune_qat"] = "qat"
    epochs: int = 2               # fine-tuning epochs (QAT on the quick start: test accuracy 0.981 ->
                                  # 0.982 after 1 epoch, as PTQ int8; 0.985-0.986 after 2)

    def validate(self) -> None:
        if self.epochs < 1:
            raise OptionError(f"compress.epochs must be >= 1, got {self.epochs}")


@dataclass(frozen=True)
class RunConfig:
    """Train, export (every format, parity-gated), compress and report a classifier; train,
    export and report a detector. Run dirs: `out`, `out`-<method>, `out`-det."""
    out: str = "runs/quickstart"
    train: TrainConfig = field(default_factory=quickstart_training)
    formats: tuple[str, ...] = ALL_FORMATS
    compress: CompressStep = field(default_factory=CompressStep)
    detect: bool = True            # also train and export the detector
    detector: TrainConfig = field(default_factory=quickstart_detector)
    # the detector's files: every detection format but tflite_fp16 (the slowest float file here,
    # never the one to ship; () = all)
    detector_formats: tuple[str, ...] = ("tflite_fp32", "tflite_dynamic", "tflite_int8", "onnx")
    io: Literal["float", "uint8", "int8"] | None = None   # tflite_int8 input/output dtype
    gate: GateConfig = field(default_factory=GateConfig)
    int8: Int8Config = field(default_factory=Int8Config)   # a failing int8 file: diagnosis, repair
    report: bool = True
    report_runs: int = 50          # timed predictions per exported file
    overwrite: bool = False        # retrain even if `out` holds a finished run with these options

    def validate(self) -> None:
        if not self.out:
            raise OptionError("out: give the run dir (out=runs/quickstart)")
        for name, cfg in (("train", self.train), ("detector", self.detector)):
            if cfg.out:
                raise OptionError(f"{name}.out={cfg.out}: set the run dirs with out= instead")
        if self.train.task != "classification":
            raise OptionError("train: the main job's first model is a classifier; the detector is "
                              "detector.* (train.task=detection is not needed)")
        if self.detector.task != "detection":
            raise OptionError("detector.task must be detection")
        check_request(self.formats, {"io": self.io, "opset": None, "calib_samples": None},
                      get_task(self.train.task))
        check_request(self.detector_formats, {}, get_task(self.detector.task))
        if self.report_runs < 1:
            raise OptionError(f"report_runs must be >= 1, got {self.report_runs}")


def _banner(step: int, total: int, text: str) -> None:
    print(f"\n[{step}/{total}] {text}", flush=True)


def _finished_same(cfg: TrainConfig) -> bool:
    """True when cfg.out holds a finished run made with these options (nothing to retrain)."""
    paths = rundir.run_paths(cfg.out)
    if not paths.metrics.is_file() or not paths.model.is_file() or paths.has_backup():
        return False
    saved = rundir.read_yaml(paths.config)
    return saved is not None and not rundir.config_changes(saved, to_dict(cfg))


SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def check_samples(exports: list[tuple[Path, list[dict[str, Any]]]],
                  samples_dir: Path = SAMPLES) -> dict[str, Any]:
    """Every built-in sample of the model's own data set (samples/, matched by label) through
    every exported classifier file of `exports` ((export dir, artifacts) pairs), as the demo will
    show them: {"samples": [...], "files": [...], "wrong": {file: {sample: answer}}}. An empty
    "samples" list means none of them shows one of the model's labels."""
    wrong: dict[str, dict[str, str]] = {}
    chosen: dict[str, Path] = {}
    files: list[str] = []
    for export_dir, artifacts in exports:
        for art in artifacts:
            where = f"{export_dir.parent.name}/{art['file']}"
            files.append(where)
            runner = load(export_dir / art["file"])
            chosen = samples_for(list_samples(samples_dir), runner.labels)
            for name, answer in zip(chosen, runner.classify(list(chosen.values()), topk=1)):
                if answer.label != sample_label(name):
                    wrong.setdefault(where, {})[name] = f"{answer.label} {answer.score:.2f}"
    return {"samples": list(chosen), "files": files, "wrong": wrong}


SHOW_SCORE = 0.3   # the score a user filters detections at (serving detect's default)


def check_scenes(export_dir: Path, artifacts: list[dict[str, Any]],
                 samples_dir: Path = SAMPLES) -> dict[str, Any]:
    """Every built-in sample scene of the detector's classes (samples/scenes.json) through every
    exported detector file, boxes scored >= SHOW_SCORE: {"scenes": [...], "objects": n,
    "found": {file: ground-truth objects found (same label, IoU >= 0.5)}}."""
    scenes = read_scenes(samples_dir)
    chosen: dict[str, Path] = {}
    hits: dict[str, int] = {}
    for art in artifacts:
        runner = load(export_dir / art["file"])
        chosen = samples_for(list_samples(samples_dir), runner.labels, "detection", scenes)
        answers = runner.detect(list(chosen.values()), score=SHOW_SCORE)
        hits[art["file"]] = sum(found(scenes[name]["objects"], [{"label": lab, "box": box}
                                                                for lab, box in zip(d.labels, d.boxes)])
                                for name, d in zip(chosen, answers))
    return {"scenes": list(chosen), "objects": sum(len(scenes[n]["objects"]) for n in chosen),
            "found": hits}


def _scenes_line(check: dict[str, Any]) -> str:
    if not check["scenes"]:
        return "  scenes     none of samples/scenes.json shows only this detector's classes"
    counts = sorted(set(check["found"].values()))
    spread = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return (f"  scenes     {spread}/{check['objects']} objects of the {len(check['scenes'])} built-in scenes "
            f"found by each of the {len(check['found'])} detector files (score >= {SHOW_SCORE}, IoU >= 0.5)")


def _samples_line(check: dict[str, Any], n_files: int) -> str:
    if not check["samples"]:
        return "  samples    none of samples/ shows one of this model's labels"
    if not check["wrong"]:
        return (f"  samples    {len(check['samples'])} built-in samples answered right by all {n_files} "
                "files")
    bad = "; ".join(f"{f}: " + ", ".join(f"{s} -> {a}" for s, a in w.items())
                    for f, w in check["wrong"].items())
    return f"  samples    WRONG answers to built-in samples: {bad}"


def _demo_command(run_dir: Path) -> str:
    streamlit = Path(sys.executable).parent / "streamlit"
    try:
        streamlit = streamlit.relative_to(Path.cwd())
    except ValueError:
        pass
    return f"{shlex.quote(str(streamlit))} run app.py -- --runs {shlex.quote(str(run_dir.parent))}"


def _headline(metrics: dict[str, Any]) -> str:
    return get_task(metrics.get("task", "classification")).headline(metrics)


def _export(cfg: ExportConfig) -> ExportResult:
    """pipeline.export; the main job's files are all optional: one that failed (listed in the
    result's `failed` and manifest.json) never stops the job, which goes on with the others."""
    try:
        return export(cfg)
    except IncompleteExportError as e:
        return e.result  # type: ignore[return-value]


def _published(result: ExportResult, what: str) -> str:
    """'5 files, all passed the parity gate' or '4 files passed ...; NOT published: model_int8.onnx
    (top-1 agreement 0.93 < 0.97)'."""
    if not result.failed:
        return f"{len(result.artifacts)} files, all passed {what}"
    why = "; ".join(f"{r['file']} ({r['reasons'][0]}{repair_note(r)})" for r in result.failed)
    return f"{len(result.artifacts)} files passed {what}; NOT published: {why}"


def _train_or_reuse(cfg: TrainConfig) -> dict[str, Any]:
    """Train cfg (resuming an interrupted run), or reuse the finished run in cfg.out."""
    if not cfg.overwrite and _finished_same(cfg):
        metrics = json.loads((Path(cfg.out) / "metrics.json").read_text())
        print(f"{cfg.out} already holds this training ({_headline(metrics)}); reusing it "
              "(overwrite=true retrains)")
        return metrics
    return train(cfg).metrics


def _compress_or_reuse(cfg: RunConfig) -> tuple[Path, dict[str, Any]]:
    """pipeline.compress of the classifier into out-<method>; a finished run made from this very
    model.keras with the same method and epochs is reused."""
    step = cfg.compress
    out = Path(f"{cfg.out}-{step.method.replace('_', '-')}")
    metrics_path, stale = out / "metrics.json", cfg.overwrite
    if metrics_path.is_file() and not cfg.overwrite:
        metrics = json.loads(metrics_path.read_text())
        record = metrics.get("compress") or {}
        saved = rundir.read_yaml(out / "config.yaml") or {}
        if (record.get("source_sha256") == sha256_file(Path(cfg.out) / "model.keras")
                and record.get("method") == step.method and saved.get("epochs") == step.epochs):
            print(f"{out} already holds this compression ({_headline(metrics)}); reusing it")
            return out, metrics
        stale = True
    result = compress(CompressConfig(start=cfg.out, method=step.method, out=str(out), overwrite=stale,
                                     train={"epochs": step.epochs, "verbose": cfg.train.verbose}))
    return out, result.metrics


def run(cfg: RunConfig) -> dict[str, Any]:
    """The main job; returns {"run_dir", "metrics", "export", "compressed", "detector", "report",
    "samples", "seconds"} ("compressed"/"detector": None when that step is off)."""
    t0 = time.perf_counter()
    times: dict[str, float] = {}
    squeeze = cfg.compress.method != "none"
    steps = 2 + squeeze + 2 * cfg.detect + cfg.report
    step = iter(range(1, steps + 1))

    def timed(name: str, since: float) -> float:
        now = time.perf_counter()
        times[name] = now - since
        return now

    run_dir = Path(cfg.out)
    train_cfg = dataclasses.replace(cfg.train, out=cfg.out, overwrite=cfg.overwrite)
    _banner(next(step), steps, f"train {train_cfg.model.name} on {train_cfg.data.source} "
                               f"({train_cfg.epochs} epochs) -> {run_dir}")
    metrics = _train_or_reuse(train_cfg)
    t = timed("train", t0)

    _banner(next(step), steps, f"export {', '.join(cfg.formats)} with the parity gate")
    exported = _export(ExportConfig(model=str(run_dir), formats=cfg.formats, io=cfg.io, gate=cfg.gate,
                                    int8=cfg.int8))
    t = timed("export", t)

    compressed = None
    if squeeze:
        _banner(next(step), steps, f"compress: {cfg.compress.method} ({cfg.compress.epochs} epochs) "
                                   f"-> {run_dir}-{cfg.compress.method.replace('_', '-')}, then export it")
        c_dir, c_metrics = _compress_or_reuse(cfg)
        compressed = {"run_dir": c_dir, "metrics": c_metrics,
                      "export": _export(ExportConfig(model=str(c_dir), gate=cfg.gate, int8=cfg.int8))}
        t = timed("compress", t)

    detector = None
    if cfg.detect:
        det_cfg = dataclasses.replace(cfg.detector, out=f"{cfg.out}-det", overwrite=cfg.overwrite)
        _banner(next(step), steps, f"train the detector {det_cfg.model.name} "
                                   f"({det_cfg.model.options.get('backbone', '')}) on "
                                   f"{det_cfg.data.source} ({det_cfg.epochs} epochs) -> {det_cfg.out}")
        det_metrics = _train_or_reuse(det_cfg)
        t = timed("detector train", t)
        _banner(next(step), steps, "export the detector (decoding + NMS inside every file) with the "
                                   "detection parity gate")
        detector = {"run_dir": Path(det_cfg.out), "metrics": det_metrics,
                    "export": _export(ExportConfig(model=det_cfg.out, formats=cfg.detector_formats,
                                                  gate=cfg.gate))}
        t = timed("detector export", t)

    classified = [(exported.out_dir, exported.artifacts)]
    if compressed:
        classified.append((compressed["export"].out_dir, compressed["export"].artifacts))
    samples = check_samples(classified)
    if detector:
        detector["scenes"] = check_scenes(detector["export"].out_dir, detector["export"].artifacts)
    rep = None
    if cfg.report:
        _banner(next(step), steps, "report: latency through the serving runtime, size, parity")
        rep = report(ReportConfig(run=str(run_dir), runs=cfg.report_runs))
        if detector:
            detector["report"] = report(ReportConfig(run=str(detector["run_dir"]), runs=cfg.report_runs))
        t = timed("report", t)
    seconds = time.perf_counter() - t0
    _summary(cfg, seconds, times, metrics, exported, compressed, detector, samples, rep is not None)
    return {"run_dir": run_dir, "metrics": metrics, "export": exported, "compressed": compressed,
            "detector": detector, "report": rep, "samples": samples, "seconds": seconds}


def _summary(cfg: RunConfig, seconds: float, times: dict[str, float], metrics: dict[str, Any],
             exported: Any, compressed: dict[str, Any] | None, detector: dict[str, Any] | None,
             samples: dict[str, Any], reported: bool) -> None:
    run_dir = Path(cfg.out)
    print(f"\ndone in {seconds / 60:.1f} min (" + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + ")")
    print(f"  classifier {run_dir}  (model.keras, metrics.json: {_headline(metrics)}, curves.png, "
          "confusion_matrix.png)")
    print(f"  artifacts  {exported.out_dir}  ({_published(exported, 'the parity gate')}; manifest.json)")
    if compressed:
        c_export = compressed["export"]
        files = ", ".join(a["file"] for a in c_export.artifacts)
        failed = f"; {_published(c_export, 'the gate')}" if c_export.failed else ""
        print(f"  compressed {compressed['run_dir']}  ({cfg.compress.method}: "
              f"{_headline(compressed['metrics'])}; export/: {files}{failed})")
    if detector:
        print(f"  detector   {detector['run_dir']}  ({_headline(detector['metrics'])}; export/: "
              f"{_published(detector['export'], 'the detection gate')}, NMS inside each)")
    if reported:
        where = [run_dir / "report.md"] + ([detector["run_dir"] / "report.md"] if detector else [])
        print(f"  report     {', '.join(map(str, where))}  (report.json, pareto.png)")
    print(_samples_line(samples, len(samples["files"])))
    if detector:
        print(_scenes_line(detector["scenes"]))
    print(f"  demo       {_demo_command(run_dir)}")
