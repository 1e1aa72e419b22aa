"""Run every compression method on tiny registry models, in a process of its own (tfmot).

    python tests/compress_sweep.py out.json resnet18 mobilenetv2 ...

For each model (width 0.25, 32x32x3, 3 classes): prune (wrap, 2 train steps, plain weights
back into Keras 3), QAT and prune-preserving QAT (annotate, quantize_apply, 2 train steps, the
QAT graph saved and converted as `pipeline export` makes tflite_qat_int8, checked
full-integer and run in LiteRT). Writes {name: {method: "ok" or the
one-line OptionError}}; any other exception is a failure of the sweep itself.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _fit_steps(model, x, y) -> None:
    import tf_keras

    model.compile(tf_keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    for _ in range(2):
        model.train_on_batch(x, y)


def _export_qat_int8(model, keras3, qplan, x, work: Path) -> None:
    """The export's own tflite_qat_int8 path: the QAT graph saved as pipeline.compress saves it,
    converted by pipeline.export.tflite.convert (its ranges alone when the input Rescaling is
    quantized in the graph, else calibrated) and checked full-integer; then run in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    from models.atomic import write_json
    from pipeline.compress import tfmot_ops as ops
    from pipeline.export.formats import get_format
    from pipeline.export.tflite import convert
    from pipeline.tasks import get_task

    graph = work / "qat" / "saved_model"
    ops.refresh_weight_ranges(model)   # as pipeline.compress does before it saves the graph
    ops.save_qat_graph(model, str(graph), x.shape[1:])
    write_json(graph.parent / "info.json", {"weights": "per_channel",
                                            "needs_calibration": ops.needs_calibration(qplan)})
    data = convert(keras3, get_format("tflite_qat_int8"), {"io": "float"}, calibration=x.astype(np.uint8),
                   workdir=work, graph=graph, task=get_task("classification"))
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x[:1])
    interp.invoke()
    probs = interp.get_tensor(interp.get_output_details()[0]["index"])
    if not np.all(np.isfinite(probs)) or abs(float(probs.sum()) - 1.0) > 0.05:
        raise AssertionError(f"{keras3.name}: the QAT int8 file answers {probs}")


def sweep(name: str) -> dict[str, str]:
    import tempfile

    import tf_keras

    from models import build_twin, create_model
    from models.options import OptionError
    from models.registry import family_config
    from pipeline.compress import tfmot_ops as ops

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 4)]
    keras3 = create_model(name, num_classes=3, input_shape=(32, 32, 3), width=0.25)
    result = {}
    tmp = tempfile.mkdtemp(prefix=f"sweep-{name}-")
    for method in ("prune", "prune_2:4", "qat", "prune_qat"):
        try:
            twin = build_twin(keras3, tf_keras)
            if method in ("prune", "prune_2:4"):
                structure = "2:4" if method == "prune_2:4" else "unstructured"
                plan = ops.prune_plan(twin, ("first", "classifier"), tuple(family_config(name).classifier))
                model = ops.wrap_pruning(twin, plan, target=0.5 if structure == "2:4" else 0.75,
                                         schedule="constant", structure=structure, begin_step=0,
                                         end_step=0, frequency=1)
                model.compile(tf_keras.optimizers.Adam(1e-3), "categorical_crossentropy")
                model.fit(x, y, epochs=1, verbose=0, callbacks=[ops.update_pruning_step()])
                weights = ops.plain_weights(model, keras3)
                keras3.set_weights(weights)
                if structure == "2:4":   # 2 zeros in every group of 4 along the input channels
                    kernel = keras3.get_layer(plan[0]).get_weights()[0]
                    groups = np.moveaxis(kernel, -2, -1).reshape(-1, 4)
                    if not np.all((groups == 0).sum(1) >= 2):
                        raise AssertionError(f"{name}: {plan[0]} is not 2:4 sparse")
            else:
                qplan = ops.quantize_plan(twin)
                model = ops.wrap_qat(twin, qplan, per_tensor=False,
                                     preserve_sparsity=method == "prune_qat")
                _fit_steps(model, x, y)
                keras3.set_weights(ops.plain_weights(model, keras3))
                _export_qat_int8(model, keras3, qplan, x, Path(tmp) / method)
            result[method] = "ok"
        except OptionError as e:
            result[method] = str(e)
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str]) -> int:
    out, names = Path(argv[0]), argv[1:]
    results: dict[str, dict[str, str]] = {}
    for name in names:   # written after each family, so a long sweep that is stopped keeps its part
        results[name] = sweep(name)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
