"""python -m serving COMMAND key=value ...

    python -m serving predict model=export/model_fp32.tflite source=photos/ [topk=5] [json=true] [tta=flip]
    python -m serving benchmark model=export/model_int8.tflite [threads=1] [runs=100] [kernels=builtin]
    python -m serving detect model=export/model_fp32.tflite source=photos/ [score=0.3] [json=true] [save=out/]

A thin layer over serving.load / Runner.classify / Runner.detect and serving.benchmark.run. Options are typed
dataclass fields (unknown keys get a did-you-mean). Exit status: 0 ok, 1 when some images
failed (each named on stderr, the rest still classified), 2 for bad options or model files.
"""
from __future__ import annotations

import glob
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # only matters for .keras models

from models.atomic import write_json
from models.options import OptionError, describe, parse_kv, replace_checked, suggest  # noqa: E402
from serving.backends.tflite import KERNELS
from serving.benchmark import format_table, run
from serving.images import SUFFIXES, ImageError, is_image_file  # noqa: E402
from serving.metadata import ArtifactError  # noqa: E402
from serving.runtime import load
from serving.tasks.detect import SCORE_THRESHOLD, output_stems, save_annotated
from serving.tta import MODES


@dataclass
class PredictConfig:
    model: str = ""            # .tflite / .onnx / .keras file
    source: str = ""           # an image, a folder (searched recursively) or a glob pattern
    topk: int = 5
    json: bool = False         # JSON lines instead of a table
    threads: int | None = None  # TFLite/ONNX intra-op threads (default 1)
    manifest: str = "auto"     # auto (manifest.json beside the model) | none | a manifest path
    tta: str = "none"          # none | flip (2 views) | flip_crop (10 views): average the probabilities

    def validate(self) -> None:

        for key in ("model", "source"):
            if not getattr(self, key):
                raise OptionError(f"{key}=... is required")
        if self.topk < 1:
            raise OptionError(f"topk must be >= 1, got {self.topk}")
        if self.tta not in MODES:
            raise OptionError(f"tta: {self.tta!r} is not one of {', '.join(MODES)}{suggest(self.tta, MODES)}")


@dataclass
class BenchmarkConfig:
    model: str = ""
    threads: int | None = None  # default 1 for TFLite/ONNX (two were slower on 2 shared cores)
    runs: int = 100
    warmup: int = 10
    batch: int = 1
    json: bool = False         # print the result as JSON instead of a table
    out: str = ""              # also write the JSON result to this file
    manifest: str = "auto"
    kernels: str = ""          # .tflite only: xnnpack (LiteRT's default) | builtin | reference

    def validate(self) -> None:

        if not self.model:
            raise OptionError("model=... is required")
        if self.kernels and self.kernels not in KERNELS:
            raise OptionError(f"kernels: {self.kernels!r} is not one of {', '.join(KERNELS)}"
                              f"{suggest(self.kernels, KERNELS)}")
        if self.kernels and Path(self.model).suffix != ".tflite":
            raise OptionError(f"kernels={self.kernels} chooses LiteRT's kernels; {self.model} "
                              "is not a .tflite file")


@dataclass
class DetectConfig:
    model: str = ""            # a detector .tflite / .onnx / .keras file
    source: str = ""           # an image, a folder (searched recursively) or a glob pattern
    score: float = SCORE_THRESHOLD   # drop boxes below this (a file keeps boxes above its own floor, 0.05)
    json: bool = False         # JSON lines (boxes in original pixels) instead of a table
    save: str = ""             # write <name>.png (boxes drawn) and <name>.json per image here
    threads: int | None = None
    manifest: str = "auto"

    def validate(self) -> None:
        for key in ("model", "source"):
            if not getattr(self, key):
                raise OptionError(f"{key}=... is required")
        if not 0.0 <= self.score <= 1.0:
            raise OptionError(f"score must be in 0..1, got {self.score}")


def _manifest(value: str) -> str | None:
    return None if value.lower() in ("none", "off", "false", "") else value


def expand_sources(source: str) -> list[Path]:
    """An image file, a folder (image files below it, sorted) or a glob pattern."""
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
    if path.is_file():
        return [path]
    if glob.has_magic(source):
        return sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
    raise OptionError(f"source={source}: no such file or folder")


def predict(cfg: PredictConfig) -> int:

    files = expand_sources(cfg.source)
    if not files:
        raise OptionError(f"source={cfg.source}: no image files found (suffixes: {', '.join(SUFFIXES)})")
    runner = load(cfg.model, manifest=_manifest(cfg.manifest), threads=cfg.threads)
    failed = 0
    if not cfg.json:
        print(f"{'file':<40} {'label':<16} {'score':>7} {'ms':>8}  top-{cfg.topk}")
    for f in files:
        try:
            (res,) = runner.classify([f], topk=cfg.topk, tta=cfg.tta)
        except ImageError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        if cfg.json:
            print(json.dumps(res.to_dict()), flush=True)
        else:
            top = ", ".join(f"{label} {p:.3f}" for label, p in res.topk)
            print(f"{res.file:<40} {res.label:<16} {res.score:>7.4f} {res.latency_ms:>8.2f}  {top}")
    if failed:
        print(f"{failed} of {len(files)} images failed", file=sys.stderr)
    return 1 if failed else 0


def detect(cfg: DetectConfig) -> int:

    files = expand_sources(cfg.source)
    if not files:
        raise OptionError(f"source={cfg.source}: no image files found (suffixes: {', '.join(SUFFIXES)})")
    try:
        stems = output_stems(files, cfg.save) if cfg.save else [None] * len(files)
    except ValueError as e:
        raise OptionError(str(e)) from None
    runner = load(cfg.model, manifest=_manifest(cfg.manifest), threads=cfg.threads)
    if runner.task != "detection":
        raise OptionError(f"model={cfg.model}: a {runner.contract.task} model; detect needs a detector")
    failed = 0
    if not cfg.json:
        print(f"{'file':<40} {'boxes':>6} {'ms':>8}  best")
    for f, stem in zip(files, stems):
        try:
            (res,) = runner.detect([f], score=cfg.score)
        except ImageError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        if cfg.save:
            save_annotated(f, res, Path(cfg.save), stem)
        if cfg.json:
            print(json.dumps(res.to_json()), flush=True)
        else:
            best = ", ".join(f"{lab} {s:.2f}" for lab, s in list(zip(res.labels, res.scores))[:3])
            print(f"{res.file:<40} {len(res.boxes):>6} {res.latency_ms:>8.2f}  {best}")
    if failed:
        print(f"{failed} of {len(files)} images failed", file=sys.stderr)
    return 1 if failed else 0


def benchmark(cfg: BenchmarkConfig) -> int:

    result = run(cfg.model, threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup,
                 batch=cfg.batch, manifest=_manifest(cfg.manifest), progress=not cfg.json,
                 kernels=cfg.kernels or None)
    if cfg.out:
        write_json(cfg.out, {"config": asdict(cfg), "result": result})
    print(json.dumps(result, indent=2) if cfg.json else format_table([result]))
    return 0


# name: (config class, function, help)
COMMANDS: dict[str, tuple[type, Any, str]] = {
    "predict": (PredictConfig, predict, "classify images with a .tflite/.onnx/.keras file"),
    "benchmark": (BenchmarkConfig, benchmark, "latency, throughput, serving overhead, peak RSS"),
    "detect": (DetectConfig, detect, "detect objects: JSON boxes in original pixels, annotated PNGs"),
}


def _usage() -> str:

    lines = ["usage: python -m serving COMMAND key=value ...", "", "commands:"]
    for name, (cls, _, text) in COMMANDS.items():
        lines.append(f"  {name:<10} {text}")
        lines += [f"      {k}={d}  ({t})" for k, t, d in describe(cls)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or any(a in ("-h", "--help") for a in argv[1:]):
        print(_usage())
        return 0 if argv else 2
    name, args = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}{suggest(name, COMMANDS)}; commands: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    cls, fn, _ = COMMANDS[name]
    try:
        cfg = replace_checked(cls(), parse_kv(args), "option")
        cfg.validate()
        return fn(cfg)
    except (OptionError, ArtifactError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
