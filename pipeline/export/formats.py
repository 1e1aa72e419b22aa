"""The export table: one entry per file format/variant, with the options it takes.

Every request is checked against this table BEFORE any work starts (Ultralytics' habit): an
unknown format, or an option that none of the requested formats takes (io=uint8 with only
onnx), is one clear OptionError with a did-you-mean. The converters live one module per
format family (tflite.py, onnx.py); `family` names that module.

Quantization variants (TensorFlow Lite post-training quantization guide):
  tflite_fp32     float32 weights and activations (reference conversion)
  tflite_fp16     float16 weights, float32 activations (weights dequantized at load)
  tflite_dynamic  int8 weights, float activations (dynamic range: activations quantized on
                  the fly inside the kernels that support it)
  tflite_int8     int8 weights AND activations, TFLITE_BUILTINS_INT8 only, calibrated on a
                  representative sample of the training data; io = float keeps float32
                  input/output (QUANTIZE/DEQUANTIZE at the boundary), uint8/int8 makes the
                  file's input and output integer (scale/zero_point in its metadata)
  onnx            float32, through tf2onnx, opset configurable
  onnx_int8       ONNX Runtime static quantization of the onnx file: QDQ, int8 per-channel
                  weights, uint8 activations, calibrated on the same training sample as
                  tflite_int8 (the int8 file for ONNX users; a QAT graph through tf2onnx was
                  measured as not faithful, so QAT runs get this one too)
  tflite_qat_int8 full integer from a QAT run's own graph (pipeline.compress method=qat or
                  prune_qat): the learned ranges, not a calibration, set the activation scales
  tflite_sparse   float32 with TFLite's sparse weight encoding (Optimize.EXPERIMENTAL_SPARSITY):
                  a pruned model's zeros are not stored, but their indices are (resnet18 at 75%
                  zeros: 0.84x of the dense fp32 file, which gzips smaller), and it ran no faster
                  on x86. Only fp32: int8 + sparsity files failed to load with XNNPACK
                  (../shared/STACK.md). Never a default: formats=tflite_sparse asks for it

The `runs` column says which runs a format applies to: "float" (a trained, fine-tuned or pruned
run: its model.keras is the model) and "qat" (a QAT run: its qat/saved_model graph is the
model); an export with no formats= gives every format that applies to the run (tflite_sparse:
only when asked for by name).

Which formats a model of each task takes is the task's (pipeline.tasks: Task.formats). A
detector is exported with box decoding and NMS inside the file (pipeline.tasks.detection.export),
builtin LiteRT ops only: tflite_fp32, tflite_fp16 (float16 weights dequantized at load, float
NMS), tflite_dynamic (int8 conv/head weights, float activations and NMS), tflite_int8 (int8
backbone and heads, float NMS, float I/O: its outputs are boxes) and onnx. The detection parity
gate judges each by its mAP drop against Keras: gate.det_max_drop (1 point) for the float-weight
files, gate.det_max_drop_int8 (3 points) for the lossy ones (tflite_dynamic, tflite_int8).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from models.options import OptionError, suggest

IO_TYPES = ("float", "uint8", "int8")
OPSET_RANGE = (13, 18)  # 13: per-axis QuantizeLinear/Softmax semantics; 18: newest tf2onnx 1.17 knows


@dataclass(frozen=True)
class Option:
    """A format option: CLI key, default, and a one-line help."""
    name: str
    default: Any
    help: str


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("io", "float", "tflite_int8 input/output dtype: float (quantize inside) | uint8 | int8"),
    Option("opset", 17, f"ONNX opset, {OPSET_RANGE[0]}..{OPSET_RANGE[1]}"),
    Option("calib_samples", 300, "tflite_int8: training images used for calibration"),
)}


@dataclass(frozen=True)
class FormatSpec:
    name: str
    family: str                 # converter module: "tflite" | "onnx"
    weights: str                # float32 | float16 | int8
    activations: str            # float32 | int8
    options: tuple[str, ...]    # keys of OPTIONS this format takes
    calibrated: bool = False    # needs a representative dataset
    lossy: bool = False         # the gate also checks the accuracy drop
    help: str = ""
    runs: tuple[str, ...] = ("float", "qat")   # run kinds it applies to by default (see above)
    file: str = ""              # file name stem when it is not model_<variant>

    @property
    def suffix(self) -> str:
        return ".onnx" if self.family == "onnx" else ".tflite"

    def filename(self, opts: Mapping[str, Any]) -> str:
        """Truthful file name: model_int8.tflite has int8 activations; _uint8io marks integer I/O."""
        if self.family == "onnx":
            return f"{self.file or 'model'}.onnx"
        variant = self.file or self.name.split("_", 1)[1]
        io = opts.get("io", "float") if "io" in self.options else "float"
        return f"model_{variant}{'' if io == 'float' else f'_{io}io'}.tflite"

    def resolved_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """This format's options: given values where set, else the table defaults."""
        return {k: given[k] if given.get(k) is not None else OPTIONS[k].default
                for k in self.options}


FORMATS: dict[str, FormatSpec] = {f.name: f for f in (
    FormatSpec("tflite_fp32", "tflite", "float32", "float32", (),
               help="TFLite, float32", runs=("float",)),
    FormatSpec("tflite_fp16", "tflite", "float16", "float32", (),
               help="TFLite, float16 weights", runs=("float",)),
    FormatSpec("tflite_dynamic", "tflite", "int8", "float32", (), lossy=True,
               help="TFLite dynamic range: int8 weights, float activations", runs=("float",)),
    FormatSpec("tflite_int8", "tflite", "int8", "int8", ("io", "calib_samples"),
               calibrated=True, lossy=True, runs=("float",),
               help="TFLite full integer: int8 weights and activations, calibrated"),
    FormatSpec("onnx", "onnx", "float32", "float32", ("opset",),
               help="ONNX via tf2onnx, float32", runs=("float",)),
    FormatSpec("onnx_int8", "onnx", "int8", "uint8", ("opset", "calib_samples"),
               calibrated=True, lossy=True, file="model_int8",
               help="ONNX Runtime static quantization (QDQ): int8 per-channel weights, uint8 "
                    "activations, calibrated"),
    FormatSpec("tflite_qat_int8", "tflite", "int8", "int8", ("io", "calib_samples"),
               calibrated=True, lossy=True, runs=("qat",), file="qat_int8",
               help="TFLite full integer from a QAT run's graph (its learned ranges)"),
    FormatSpec("tflite_sparse", "tflite", "float32", "float32", (), runs=(),
               help="TFLite float32, sparse weight encoding (pruned models: smaller file)"),
)}


def formats_for(kind: str, task: Any = None) -> tuple[str, ...]:
    """The formats an export gives a run of this kind ("float" or "qat") and task (a
    pipeline.tasks Task; None: any task) by default."""
    return tuple(name for name, spec in FORMATS.items()
                 if kind in spec.runs and (task is None or name in task.formats))


def get_format(name: str) -> FormatSpec:
    try:
        return FORMATS[name]
    except KeyError:
        raise OptionError(f"formats: unknown format {name!r}{suggest(name, FORMATS)}; "
                          f"known: {', '.join(FORMATS)}") from None


def check_request(formats: Iterable[str], given: Mapping[str, Any], task: Any = None) -> list[FormatSpec]:
    """Validate formats and the options set explicitly (None = not set), for a model of `task`
    (a pipeline.tasks Task; None: before the model is known); return the specs. No formats:
    every format the task takes (core narrows it to the run's)."""
    names = list(formats) or [n for n in FORMATS if task is None or n in task.formats]
    specs = [get_format(n) for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise OptionError(f"formats: {', '.join(dupes)} listed twice")
    if task is not None:
        task.check_request(specs, given)
    for key, value in given.items():
        if value is None:
            continue
        takers = [s.name for s in FORMATS.values() if key in s.options]
        if not any(key in s.options for s in specs):
            raise OptionError(f"{key}={value}: not an option of {', '.join(names)} "
                              f"(only {', '.join(takers)} take{'s' if len(takers) == 1 else ''} it)")
    io = given.get("io")
    if io is not None and io not in IO_TYPES:
        raise OptionError(f"io: {io!r} is not one of {', '.join(IO_TYPES)}{suggest(str(io), IO_TYPES)}")
    opset = given.get("opset")
    if opset is not None and not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise OptionError(f"opset: {opset} is outside the supported {OPSET_RANGE[0]}..{OPSET_RANGE[1]}")
    samples = given.get("calib_samples")
    if samples is not None and samples < 1:
        raise OptionError(f"calib_samples: must be >= 1, got {samples}")
    return specs


def quantization_record(spec: FormatSpec, calibration: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata's "quantization" block for this format."""
    return {"weights": spec.weights, "activations": spec.activations,
            "calibration": dict(calibration) if spec.calibrated and calibration else None}
