"""Write serving/nms.onnx: the one-node ONNX graph serving.nms runs through ONNX Runtime.

    python -m serving.nms_graph        # rewrites serving/nms.onnx, byte for byte the same

Needs the `onnx` package (the train extra); the edge install only reads the shipped file
(package data), so a device runs the same op without `onnx`. tests/test_nms.py checks that
the shipped file equals what this script builds.

Graph (opset 11, ONNX NonMaxSuppression, center_point_box=0):
  boxes (1, N, 4) float32 corners; scores (1, 1, N) float32 (one class: serving.nms offsets
  the boxes by class first, as the exported detector files do); max_output (1,) int64;
  iou_threshold (1,) float32; score_threshold (1,) float32
  -> selected (M, 3) int64 rows (batch, class, box index), best score first.
"""
from __future__ import annotations

import sys
from pathlib import Path

PATH = Path(__file__).resolve().parent / "nms.onnx"
INPUTS = ("boxes", "scores", "max_output", "iou_threshold", "score_threshold")
OPSET = 11          # NonMaxSuppression's current definition (10 had no other change that matters)
IR_VERSION = 7      # what opset 11 needs; old enough for any ONNX Runtime that has the op


def build() -> bytes:
    """The serialized ModelProto (deterministic: no producer version, no doc strings)."""
    from onnx import TensorProto, checker, helper

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    node = helper.make_node("NonMaxSuppression", list(INPUTS), ["selected"], center_point_box=0)
    graph = helper.make_graph(
        [node], "class_offset_nms",
        [helper.make_tensor_value_info("boxes", f32, [1, "N", 4]),
         helper.make_tensor_value_info("scores", f32, [1, 1, "N"]),
         helper.make_tensor_value_info("max_output", i64, [1]),
         helper.make_tensor_value_info("iou_threshold", f32, [1]),
         helper.make_tensor_value_info("score_threshold", f32, [1])],
        [helper.make_tensor_value_info("selected", i64, ["M", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cnn-mobile-pipeline serving.nms_graph")
    model.ir_version = IR_VERSION
    checker.check_model(model)
    return model.SerializeToString()


def main() -> int:
    from models.atomic import write_bytes

    data = build()
    write_bytes(PATH, data)
    print(f"{PATH}  {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
