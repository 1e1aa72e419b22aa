"""python -m pipeline COMMAND [key=value ...] [--config file.yaml]

Every command is a thin wrapper over a public function taking one typed config:
COMMANDS maps the command name to (module, config class, function, one-line help).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from models.options import OptionError, describe, field_help, suggest  # noqa: E402
from pipeline.config import load_config

# name: (module, config class, function, help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "run": ("pipeline.run", "RunConfig", "run",
            "the main job: train on the built-in data, export every format under the parity "
            "gate, report; prints where it all is and how to open the demo"),
    "train": ("pipeline.train", "TrainConfig", "train",
              "train a registered model on digits, shapes or an image folder into a run dir "
              "(task=detection model=ssd: a detector on shapes_det or a COCO/VOC/YOLO/CSV folder) "
              "(batch_size is the global batch, split across GPUs/workers; re-running a killed "
              "command resumes it)"),
    "finetune": ("pipeline.finetune", "FinetuneConfig", "finetune",
                 "fine-tune a trained model (or ImageNet weights) on new data: new head for the "
                 "target labels (shared labels keep their rows), head warm-up, then a lower "
                 "backbone learning rate"),
    "compress": ("pipeline.compress", "CompressConfig", "compress",
                 "compress a trained run: method=prune (magnitude pruning), qat (quantization-"
                 "aware training) or prune_qat; fine-tunes on the run's data into a new run dir "
                 "(other keys are training options over the source's config)"),
    "augment-preview": ("pipeline.augment_preview", "PreviewConfig", "augment_preview",
                        "write a PNG grid of training images and augmented versions of them"),
    "export": ("pipeline.export", "ExportConfig", "export",
               "export a run to TFLite/ONNX, gate each file against Keras, write a manifest"),
    "report": ("pipeline.report", "ReportConfig", "report",
               "benchmark a run's exported files: report.md, report.json, pareto.png"),
    "make-shapes": ("pipeline.make_shapes", "MakeShapesConfig", "make_shapes",
                    "write the generated shapes dataset to disk as an image folder (task=detection: "
                    "shapes_det scenes with boxes in format=coco|voc|yolo|csv layout)"),
}


# commands that train or build Keras models in this process: TensorFlow is imported up front
# with its INFO lines dropped (serving.native_logs); verbose=2 shows them
USES_TENSORFLOW = {"run", "train", "finetune", "augment-preview"}

# commands whose --strict is a shorthand for strict=true (export: all-or-nothing publishing)
FLAGS = {"export"}

# what `pip install .` alone (or the edge extra) leaves out; a command that needs it says so
TRAINING_STACK = {"tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "onnx",
                  "sklearn", "matplotlib", "pycocotools"}


def _is_domain_error(e: BaseException) -> bool:
    """Errors defined by this project (ModelFileError, ExportError, ...) carry one-line
    messages meant for the user; a ValueError from a library is a bug and keeps its traceback."""
    return type(e).__module__.split(".")[0] in ("models", "pipeline", "serving")


def _help_epilog(config_cls: type) -> str:

    rows = describe(config_cls)
    notes = field_help(config_cls)
    width = max((len(k) for k, _, _ in rows), default=10)
    return "options (key=value):\n" + "\n".join(
        f"  {k:<{width}}  {t:<12} default {d}" + (f"  # {notes[k]}" if k in notes else "")
        for k, t, d in rows)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}{suggest(argv[0], COMMANDS)}; "
              f"commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m pipeline",
                                     description="Train, compress, export and report on CNNs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, cfg_name, _fn, help_text) in COMMANDS.items():
        epilog = None
        if argv[:1] == [name] and any(a in ("-h", "--help") for a in argv):
            epilog = _help_epilog(getattr(importlib.import_module(module), cfg_name))
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("options", nargs="*", metavar="key=value")
        p.add_argument("--config", help="YAML file read before the key=value overrides")
        if name in FLAGS:
            p.add_argument("--strict", action="store_true", help="same as strict=true")
    args = parser.parse_args(argv)

    module, cfg_name, fn_name, _ = COMMANDS[args.command]
    mod = importlib.import_module(module)

    cfg_cls = getattr(mod, cfg_name)
    positional = getattr(cfg_cls, "POSITIONAL", None)  # `report runs/r1` = `report run=runs/r1`
    options = [f"{positional}={a}" if positional and "=" not in a else a for a in args.options]
    if getattr(args, "strict", False):
        options.append("strict=true")
    try:
        cfg = load_config(cfg_cls, options, args.config)
        if getattr(cfg, "verbose", 1) is not True and getattr(cfg, "verbose", 1) >= 2:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"   # everything, for this process and its workers
        if args.command in USES_TENSORFLOW:
            from serving.native_logs import import_tensorflow

            import_tensorflow()
        getattr(mod, fn_name)(cfg)
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        if not _is_domain_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)  # a file/model/data problem: one line, no traceback
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:   # a full disk, a quota, a vanished folder: one line, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAINING_STACK:
            raise
        print(f"error: `{args.command}` needs the training stack, and {e.name} is not installed "
              "(pip install 'cnn-mobile-pipeline[train]', or `make setup` in a checkout)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
