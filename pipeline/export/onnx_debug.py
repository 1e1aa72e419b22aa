"""Which layers of an ONNX Runtime int8 (QDQ) file cost the agreement, and the file with them
kept float.

ONNX Runtime's quantization debugging (`onnxruntime.quantization.qdq_loss_debug`): the float
and the QDQ model are both augmented to output every activation, run on the same images, and
matched tensor by tensor. A tensor's relative error is RMS(int8 - float) / RMS(float) across
the two models, which accumulates along the graph; a LAYER (the nodes between quantized
tensors, e.g. Conv + Relu) is charged what it ADDS: its output's error minus the worst of its
inputs'. A layer whose int8 weights or range are broken jumps from ~0.01 to ~1; the layers after
it inherit that error and add nothing. `nodes_to_exclude` of `quantize_static` keeps a layer's
nodes float (names of the pre-processed model, which quant_pre_process makes deterministically).
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.export.errors import ExportError, first_line
from pipeline.export.onnx import quantize

METRIC = "added rel. error"
METRIC_HELP = ("RMS(int8 - float) / RMS(float) of the layer's output, minus the worst of its "
               "inputs': the error this layer adds")


SHAPE_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Identity")


def _relative(float_acts: list[np.ndarray], quant_acts: list[np.ndarray]) -> float:
    f = np.concatenate([a.ravel() for a in float_acts]).astype(np.float64)
    q = np.concatenate([a.ravel() for a in quant_acts]).astype(np.float64)
    return float(np.sqrt(np.mean((q - f) ** 2)) / (np.sqrt(np.mean(f ** 2)) + 1e-12))


def layer_name(node: str) -> str:
    """tf2onnx keeps the TF scope: "functional_1/conv2_1/convolution" -> "conv2"."""
    parts = node.split("/")
    return re.sub(r"_\d+$", "", parts[1] if len(parts) > 2 else parts[0])


class OnnxInt8Debug:
    """The float ONNX file `float_path`, its pre-processed graph and the QDQ model quantized with
    by onnx.quantize (onnx_int8's recipe) on `calibration`; `sample`: the images the errors are
    measured on."""

    def __init__(self, float_path: Path, calibration: np.ndarray, sample: np.ndarray,
                 workdir: Path) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.workdir, self.calibration, self.sample = Path(workdir), calibration, sample
        self.pre = self.workdir / "debug_pre.onnx"
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(float_path), str(self.pre), skip_symbolic_shape=True)

    def _reader(self, images: np.ndarray) -> Any:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader

        name = onnx.load(str(self.pre)).graph.input[0].name

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.images = iter(images)

            def get_next(self) -> dict[str, np.ndarray] | None:
                img = next(self.images, None)
                return None if img is None else {name: img[None].astype(np.float32)}
        return Reader()

    def layers(self) -> list[dict[str, Any]]:
        """Every quantized layer, worst first: {"node" (its nodes, comma-joined), "layer", "op",
        "error"}."""
        import onnx
        from onnxruntime.quantization import qdq_loss_debug as qd

        qdq = self.workdir / "debug_qdq.onnx"
        quantize(self.pre, qdq, self.calibration, True, [])
        acts = {}
        try:
            for kind, path in (("float", self.pre), ("qdq", qdq)):
                aug = self.workdir / f"debug_{kind}_aug.onnx"
                with contextlib.redirect_stdout(io.StringIO()):
                    qd.modify_model_output_intermediate_tensors(str(path), str(aug))
                    acts[kind] = qd.collect_activations(str(aug), self._reader(self.sample))
        except Exception as e:  # onnxruntime raises a variety of types
            raise ExportError(f"int8 diagnosis: ONNX Runtime's qdq_loss_debug failed: {first_line(e)}") from e
        match = qd.create_activation_matching(acts["qdq"], acts["float"])
        err = {t: _relative(v["float"], v["post_qdq"]) for t, v in match.items()
               if v.get("float") is not None and v.get("post_qdq") is not None}
        graph = onnx.load(str(self.pre)).graph
        producer = {o: n for n in graph.node for o in n.output}
        rows = []
        for tensor, e_out in err.items():
            if tensor not in producer or producer[tensor].op_type in SHAPE_OPS:
                continue   # the graph input; a reshape computes nothing
            nodes, inputs = _layer(producer[tensor], producer, set(err))
            main = next((n for n in nodes if n.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose")),
                        nodes[0])
            e_in = max((err[t] for t in inputs), default=0.0)
            rows.append({"node": ",".join(n.name for n in nodes), "layer": layer_name(main.name),
                         "op": main.op_type, "error": e_out - e_in, "tensor": tensor})
        return sorted(rows, key=lambda r: -r["error"])

    def convert(self, float_nodes: list[str] = (), per_tensor: bool = False,  # type: ignore[assignment]
                calibration: np.ndarray | None = None) -> bytes:
        """The QDQ file with the nodes of `float_nodes` (layers' "node" strings) kept float."""
        exclude = [n for group in float_nodes for n in group.split(",")]
        out = self.workdir / "debug_out.onnx"
        try:
            quantize(self.pre, out, self.calibration if calibration is None else calibration,
                     not per_tensor, exclude)
            return out.read_bytes()
        finally:
            out.unlink(missing_ok=True)


def _layer(last: Any, producer: dict[str, Any], quantized: set[str]) -> tuple[list[Any], set[str]]:
    """The nodes from the quantized tensors feeding `last` up to it (a Conv and its Relu, ...),
    in graph order, and those input tensors."""
    nodes, inputs, todo = [], set(), [last]
    while todo:
        node = todo.pop()
        if node in nodes:
            continue
        nodes.append(node)
        for t in node.input:
            if t in quantized:
                inputs.add(t)
            elif t in producer:   # an intermediate float tensor (or a weight's DQ chain: none here)
                todo.append(producer[t])
    return nodes[::-1], inputs
