"""Accelerator placement: which ops of an exported file a phone's accelerator would take.

Information, never a gate: `check(path)` returns the manifest row's "accelerator" record, whose
"summary" is one report cell; a check that itself fails gives "unknown: <why>".

.tflite -> the LiteRT GPU delegate. TensorFlow's own `tf.lite.experimental.Analyzer.analyze(...,
gpu_compatibility=True)` is NOT used: on our pinned TF 2.21 it prints "Your model looks
compatible with GPU delegate" for a detector with NON_MAX_SUPPRESSION_V5, for float and int8
files alike (measured), although the delegate's own rules reject that op. The rules here are
read from the delegate's source (tensorflow/tensorflow, commit 03a5e4e1 of
tensorflow/lite/tools/versioning/gpu_compatibility.cc, the per-op checks the delegate's
model_builder.cc calls, and model_builder.cc's IsAllAllowedTensors):
  - an op runs on the GPU only if its builtin code is one CheckGpuDelegateCompatibility accepts
    (GPU_OPS below; any other op: "Not supported op"), with the per-op limits transcribed in
    `_limits` (the cheap ones: slice masks and ranks, constant axes, 1-D gather indices, cast
    types, one runtime input for RESHAPE/TILE/TRANSPOSE, at most two for convolutions and
    fully connected, softmax beta, pad shapes; the rest of that file's per-op checks, e.g.
    ADD/MUL broadcasting or depthwise multipliers, are not repeated here, so "full" means every
    op passed these);
  - every non-constant input/output tensor of the op must be float32/float16, or int8/uint8
    since TfLiteGpuDelegateOptionsV2Default() sets TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT:
    a full-integer file runs on the GPU by dequantizing (QUANTIZE/DEQUANTIZE are accepted, int8
    constant weights are dequantized when read: model_builder_helper.cc CreateVectorCopyData),
    i.e. in float, not int8; an int32 or bool runtime tensor (NMS indices, comparisons) keeps its
    op on the CPU ("OP is supported, but tensor type isn't matched").
The delegate has no op-version limits in that source. It delegates the largest connected run of
supported ops by default (max_delegated_partitions=1): with CPU ops in the middle of a graph
more ops may stay on the CPU than listed ("delegated_by_default" estimates the run it takes).

.onnx -> ONNX Runtime's mobile usability checker (onnxruntime.tools.check_onnx_model_mobile_
usability, its Python API `usability_checker.analyze_model`): its verdict for NNAPI (Android) and
CoreML (iOS), and the ops it names as unsupported. ORT's CPU EP on a phone runs every op.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ai_edge_litert import schema_py_generated as fb  # the flatbuffer schema, no TensorFlow

SOURCE = ("LiteRT GPU delegate rules from tensorflow/lite/tools/versioning/gpu_compatibility.cc "
          "and delegates/gpu/common/model_builder.cc (TF source, quantized ops enabled as in "
          "TfLiteGpuDelegateOptionsV2Default)")
NMS = ("NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5")
SHOWN = 4   # op names shown in a summary cell; the rest are counted

# The builtin ops CheckGpuDelegateCompatibility (gpu_compatibility.cc) has a case for
GPU_OPS = frozenset("""
ADD ADD_N AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D CUMSUM DENSIFY DEPTHWISE_CONV_2D
DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP DYNAMIC_UPDATE_SLICE FULLY_CONNECTED GATHER HARD_SWISH
LSTM MAX_POOL_2D MEAN MUL PACK ONE_HOT QUANTIZE RELU_N1_TO_1 PRELU RESHAPE SELECT SELECT_V2 SLICE
SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V STRIDED_SLICE TILE TRANSPOSE TRANSPOSE_CONV RESIZE_BILINEAR
RESIZE_NEAREST_NEIGHBOR RELU RELU6 LEAKY_RELU REDUCE_MAX REDUCE_MIN REDUCE_PROD SUM PAD PADV2
MIRROR_PAD ABS CEIL COS ELU EXP FLOOR GELU LOG LOGISTIC NEG RSQRT SIGN SIN SQRT SQUARE TANH ATAN2
DIV EQUAL FLOOR_DIV FLOOR_MOD GREATER GREATER_EQUAL LOGICAL_AND LESS LESS_EQUAL MAXIMUM MINIMUM
NOT_EQUAL POW SQUARED_DIFFERENCE SUB STABLEHLO_CLAMP
""".split())
GPU_CUSTOM = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D",
                        "Resampler"})
GPU_TENSOR_TYPES = frozenset({"FLOAT32", "FLOAT16", "INT8", "UINT8"})   # with ENABLE_QUANT


def check(path: Path) -> dict[str, Any]:
    """The placement record of one exported file ({"summary": one line, ...})."""
    path = Path(path)
    try:
        if path.suffix == ".tflite":
            return tflite_gpu(path.read_bytes())
        if path.suffix == ".onnx":
            return onnx_mobile(path)
        return {"summary": f"unknown: no placement check for {path.suffix} files"}
    except Exception as e:  # information only: never fail an export on it
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return {"summary": f"unknown: {type(e).__name__}: {why}"}


# ---------------------------------------------------------------- LiteRT GPU delegate

def _names(enum_class: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def tflite_gpu(data: bytes) -> dict[str, Any]:
    """Per-op GPU delegate placement of a .tflite (its main subgraph, execution order)."""
    model = fb.Model.GetRootAs(data, 0)
    op_names, type_names = _names(fb.BuiltinOperator), _names(fb.TensorType)
    graph = model.Subgraphs(0)

    def op_name(op: Any) -> str:
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
        return code.CustomCode().decode() if name == "CUSTOM" else name

    def stored(t: int) -> bool:
        buf = model.Buffers(graph.Tensors(t).Buffer())
        return buf is not None and (buf.DataLength() > 0 or buf.Offset() > 1)

    # an fp16 file's DEQUANTIZE of a stored float16 weight: the delegate skips the node and reads
    # the weight as a constant (FP16GraphPartitionHelper; model_builder.cc "Ignore Fp16 Dequantize")
    fp16_weights = set()
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        t = op.Inputs(0) if op.InputsLength() else -1
        if (op_name(op) == "DEQUANTIZE" and t >= 0 and stored(t)
                and type_names[graph.Tensors(t).Type()] == "FLOAT16"):
            fp16_weights.add(op.Outputs(0))

    def is_const(t: int) -> bool:
        return stored(t) or t in fp16_weights

    cpu = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name = op_name(op)
        ins = [t for t in op.InputsAsNumpy().tolist() if t >= 0]
        outs = op.OutputsAsNumpy().tolist()
        why = None
        if name not in GPU_OPS and name not in GPU_CUSTOM:
            why = "not supported by the GPU delegate"
        else:
            tensors = {t: (type_names[graph.Tensors(t).Type()], graph.Tensors(t).ShapeAsNumpy(),
                           is_const(t)) for t in ins + outs}
            bad = sorted({ty for t, (ty, _, const) in tensors.items() if not const}
                         - GPU_TENSOR_TYPES)
            if bad:
                why = f"{'/'.join(bad)} runtime tensor (GPU tensors: float32, float16, int8, uint8)"
            else:
                why = _limits(name, op, [tensors[t] for t in ins], [tensors[t] for t in outs])
        if why:
            cpu.append({"index": i, "op": name, "why": why})
    total = graph.OperatorsLength()
    # runs of GPU ops between CPU ops, in execution order: the delegate takes the largest one by
    # default (an estimate: its partitioner may join runs that do not depend on the ops between)
    edges = [-1] + [c["index"] for c in cpu] + [total]
    runs = [b - a - 1 for a, b in zip(edges, edges[1:]) if b - a > 1]
    return {"runtime": "LiteRT GPU delegate", "summary": _gpu_summary(cpu), "ops": total,
            "gpu_ops": total - len(cpu), "cpu_ops": cpu, "gpu_runs": runs,
            "delegated_by_default": max(runs, default=0), "rules": SOURCE}


def _limits(name: str, op: Any, ins: list, outs: list) -> str | None:
    """The cheap per-op limits of gpu_compatibility.cc (ins/outs: (type, shape, constant)); None
    when the op passes them."""
    runtime = sum(1 for _, _, const in ins if not const)
    if name in ("RESHAPE", "TILE", "TRANSPOSE") and runtime != 1:
        return f"{name} needs exactly 1 runtime input, has {runtime}"
    if name in ("SLICE", "STRIDED_SLICE") and len(ins[0][1]) not in (3, 4):
        return f"{name} only on 3-D or 4-D tensors (got {len(ins[0][1])}-D)"
    if name == "STRIDED_SLICE":
        opts = _options(op, fb.StridedSliceOptions)
        if opts and (opts.EllipsisMask() or opts.NewAxisMask() or opts.ShrinkAxisMask()):
            return "STRIDED_SLICE with ellipsis/new-axis/shrink-axis mask"
    if name == "SOFTMAX":
        opts = _options(op, fb.SoftmaxOptions)
        if opts and opts.Beta() != 1:
            return "SOFTMAX with beta != 1"
    if name in ("PAD", "PADV2", "MIRROR_PAD") and (len(ins) < 2 or list(ins[1][1]) not in ([3, 2], [4, 2])):
        return f"{name} paddings must be 3x2 or 4x2"
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV") and runtime > 2:
        return f"{name} with more than 2 runtime inputs"
    if name == "FULLY_CONNECTED" and (ins[0][2] or runtime > 2):
        return "FULLY_CONNECTED with a constant input or more than 2 runtime inputs"
    if name in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD") and not ins[1][2]:
        return f"{name} only with constant axes"
    if name == "GATHER" and len(ins[1][1]) != 1:
        return "GATHER only with 1-D indices"
    if name == "CAST":
        pair = (ins[0][0], outs[0][0])
        ok = ({("BOOL", "FLOAT32"), ("BOOL", "FLOAT16"), ("FLOAT32", "BOOL"), ("FLOAT16", "BOOL")}
              | {(a, b) for a in ("FLOAT32", "INT32") for b in ("FLOAT32", "INT32")})
        if pair not in ok:
            return f"CAST {pair[0]} -> {pair[1]} not supported"
    return None


def _options(op: Any, cls: Any) -> Any:
    """The op's builtin options table as `cls` (fb.SoftmaxOptions, ...), None when absent."""
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _gpu_summary(cpu: list[dict[str, Any]]) -> str:
    if not cpu:
        return "full"
    names = list(dict.fromkeys(c["op"] for c in cpu))
    names.sort(key=lambda n: n not in NMS)   # NMS first: the op the nms=false variant takes out
    shown = ", ".join(names[:SHOWN]) + (f", +{len(names) - SHOWN} more" if len(names) > SHOWN else "")
    note = "; only NMS on CPU" if set(names) <= set(NMS) else ""
    return f"partial: {len(cpu)} op{'s' if len(cpu) > 1 else ''} on CPU ({shown}){note}"


# ---------------------------------------------------------------- ONNX Runtime mobile

class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def onnx_mobile(path: Path) -> dict[str, Any]:
    """ORT mobile usability checker's verdicts (NNAPI, CoreML) and the ops it names."""
    from onnxruntime.tools.mobile_helpers import usability_checker

    logger = logging.getLogger(f"{__name__}.ort_mobile")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = _Lines()
    logger.addHandler(handler)
    try:
        helps = usability_checker.analyze_model(Path(path), skip_optimize=False, logger=logger)
    finally:
        logger.removeHandler(handler)
    return parse_ort_log(handler.lines, bool(helps))


def parse_ort_log(lines: list[str], helps: bool) -> dict[str, Any]:
    """The checker's INFO lines -> {"eps": {EP: {"as_is": YES|MAYBE|NO, "fixed_shapes": ...,
    "unsupported_ops": [...]}}, "summary": ...}."""
    eps: dict[str, dict[str, Any]] = {}
    ep = None
    for line in lines:
        if line.startswith("Checking ") and not line.startswith("Checking if ") \
                and " for usability" not in line:   # "Checking NNAPI": that EP's section
            ep = line[len("Checking "):].strip()
            eps[ep] = {"unsupported_ops": []}
        elif ep and line.strip().startswith("Unsupported ops:"):
            ops = [o.split(":")[-1] for o in line.split(":", 1)[1].strip().split(",") if o]
            eps[ep]["unsupported_ops"] = sorted(set(eps[ep]["unsupported_ops"]) | set(ops))
        elif ep and line.startswith(f"Model should perform well with {ep} as is: "):
            eps[ep]["as_is"] = line.rsplit(":", 1)[1].strip()
        elif ep and line.startswith(f"Model should perform well with {ep} if modified to have fixed"):
            eps[ep]["fixed_shapes"] = line.rsplit(":", 1)[1].strip()
    if not eps or any("as_is" not in v for v in eps.values()):
        raise ValueError("the ORT mobile usability checker's output was not understood")
    ops = sorted({o for v in eps.values() for o in v["unsupported_ops"]},
                 key=lambda o: (o != "NonMaxSuppression", o))
    verdicts = ", ".join(f"{name} {v['as_is']}"
                         + (f" ({v['fixed_shapes']} with fixed shapes)" if v.get("fixed_shapes")
                            and v["fixed_shapes"] != v["as_is"] else "")
                         for name, v in eps.items())
    shown = ", ".join(ops[:SHOWN]) + (f", +{len(ops) - SHOWN} more" if len(ops) > SHOWN else "")
    summary = f"ORT mobile: {verdicts}" + (f"; unsupported: {shown}" if ops else "")
    return {"runtime": "ONNX Runtime mobile (usability checker)", "summary": summary, "eps": eps,
            "try_nnapi_or_coreml": helps, "cpu_ep": "runs every op"}
