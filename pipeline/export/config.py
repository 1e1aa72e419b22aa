"""The typed config of `python -m pipeline export` (and `pipeline.export.export(cfg)`).

    python -m pipeline export model=runs/r1 formats=tflite_fp32,tflite_int8,onnx io=uint8
           gate.tflite_int8=0.98 out=dist/r1

Format options (io, opset, calib_samples) are None when not given, so the export table
(formats.py) can tell "set by the user" from "the format's default" and refuse an option
that none of the requested formats takes. All of it is checked in validate(), i.e. before
any file is touched or TensorFlow is imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from models.options import OptionError, suggest
from pipeline.export.formats import FORMATS, check_request, formats_for
from serving.tta import MODES

ALL_FORMATS = formats_for("float")   # what a trained (or pruned) run exports by default


@dataclass(frozen=True)
class GateConfig:
    """Parity gate: minimum top-1 agreement with the Keras model per format (0..1), and the
    largest accuracy drop (0.02 = 2 points) allowed for lossy (quantized) formats."""
    tflite_fp32: float = 0.995
    tflite_fp16: float = 0.99
    tflite_dynamic: float = 0.97
    tflite_int8: float = 0.97
    onnx: float = 0.995
    onnx_int8: float = 0.97
    tflite_qat_int8: float = 0.97       # against the QAT graph the file was made from
    tflite_sparse: float = 0.995
    max_accuracy_drop: float = 0.02
    max_abs_diff: float | None = None   # optional bound on |p_artifact - p_keras|, every format
    det_max_drop: float = 0.01          # detectors: largest mAP@.5 and mAP@[.5:.95] drop, fp32/onnx
    det_max_drop_int8: float = 0.03     # ... and for the lossy files (tflite_int8, tflite_dynamic)
    mediapipe: float = 0.99             # .tflite: the least share of serving's top-1 answers
                                        # (classifiers) or boxes (detectors, both ways) that
                                        # MediaPipe Tasks must give on the same images
    mediapipe_int8: float = 0.95        # ... for the lossy files: MediaPipe's own LiteRT rounds
                                        # int8 differently (serving's kernels=builtin moves as much)
    samples: int = 0                    # held-out images compared; 0 = the whole test split
    tta: str = "none"                   # also measure each file's accuracy with test-time
                                        # augmentation (flip | flip_crop): accuracy_tta

    def min_agreement(self, fmt: str) -> float:
        return float(getattr(self, fmt))

    def min_mediapipe(self, spec: Any) -> float:
        """The least share of serving's answers MediaPipe must give for a file of this format."""
        return self.mediapipe_int8 if spec.lossy else self.mediapipe

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in FORMATS and not 0.0 <= value <= 1.0:
                raise OptionError(f"gate.{f.name}: top-1 agreement must be in 0..1, got {value}")
        if not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise OptionError(f"gate.max_accuracy_drop: must be in 0..1 (0.02 = 2 points), "
                              f"got {self.max_accuracy_drop}")
        for name in ("det_max_drop", "det_max_drop_int8"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise OptionError(f"gate.{name}: must be in 0..1 (0.01 = 1 point of mAP), "
                                  f"got {getattr(self, name)}")
        if self.max_abs_diff is not None and self.max_abs_diff < 0:
            raise OptionError(f"gate.max_abs_diff: must be >= 0, got {self.max_abs_diff}")
        for name in ("mediapipe", "mediapipe_int8"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise OptionError(f"gate.{name}: a share in 0..1, got {getattr(self, name)}")
        if self.samples < 0:
            raise OptionError(f"gate.samples: must be >= 0, got {self.samples}")

        if self.tta not in MODES:

            raise OptionError(f"gate.tta: {self.tta!r} is not one of {', '.join(MODES)}"
                              f"{suggest(self.tta, MODES)}")


@dataclass(frozen=True)
class Int8Config:
    """What happens when a calibrated int8 file (tflite_int8, onnx_int8) fails its gate: it is
    always diagnosed (per-layer quantization error, ranked: manifest.json and the report); with
    repair=auto it is then re-made, cheap fixes first (more calibration images, augmented
    calibration images, per-tensor weights), then with the worst layers kept float
    (model_int8_mixed.*), adding them in rank order until the file passes or `budget` (a fraction
    of the quantized layers) is spent."""
    repair: Literal["auto", "none"] = "auto"
    budget: float = 0.2          # at most this fraction of the layers may stay float
    extra_calib: int = 2         # "more calibration": this many times calib_samples more images

    def validate(self) -> None:
        if self.repair not in ("auto", "none"):
            raise OptionError(f"int8.repair: {self.repair!r} is not one of auto, none"
                              f"{suggest(str(self.repair), ('auto', 'none'))}")
        if not 0.0 < self.budget <= 1.0:
            raise OptionError(f"int8.budget: a fraction of the layers in (0, 1], got {self.budget}")
        if self.extra_calib < 0:
            raise OptionError(f"int8.extra_calib: must be >= 0, got {self.extra_calib}")


@dataclass(frozen=True)
class ExportConfig:
    """Export a trained model to every requested format, gate each file, write a manifest."""
    POSITIONAL: ClassVar[str] = "model"     # `python -m pipeline export runs/r1`
    model: str = ""                         # run dir (model.keras + config.yaml) or a .keras file
    formats: tuple[str, ...] = ()           # () = every format that applies to the run
    calib: str = ""          # data for calibration and the parity test split: digits|shapes|folder;
                             # default: the `data:` section of the run's config.yaml
    io: Literal["float", "uint8", "int8"] | None = None   # tflite_int8 input/output dtype
    opset: int | None = None                               # onnx opset
    calib_samples: int | None = None                       # int8 calibration images
    out: str = ""            # default: <run dir>/export
    seed: int = 0            # which training images calibrate, which test images are compared
    strict: bool = False     # all-or-nothing: one failed file publishes none (default: publish what
                             # passed, list the rest, fail only if a file named in formats= failed)
    verbose: bool = True
    gate: GateConfig = field(default_factory=GateConfig)
    int8: Int8Config = field(default_factory=Int8Config)

    def format_options(self) -> dict[str, object]:
        """Options as given (None = not set), keyed like formats.OPTIONS."""
        return {"io": self.io, "opset": self.opset, "calib_samples": self.calib_samples}

    def validate(self) -> None:
        if not self.model:
            raise OptionError("model: give a run dir or a .keras file (model=runs/r1)")
        check_request(self.formats, self.format_options())
