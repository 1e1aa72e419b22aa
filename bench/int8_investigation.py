"""Why is full-int8 TFLite slower than fp32 for MobileNetV3-Small here? Measure, in one run.

    python bench/int8_investigation.py                       # mobilenetv3_small + mobilenetv2, 224 px

For each converted file: node count, how many XNNPACK partitions the default delegate makes
and which ops it leaves to TFLite's builtin kernels (from the interpreter's node list after
delegation), and the raw invoke time (1 thread) with the default XNNPACK delegate and with
BUILTIN_WITHOUT_DEFAULT_DELEGATES. Variants separate the suspects:
  - int8 io float / uint8 / int8, per-channel vs per-tensor weights, dynamic range;
  - the hard-sigmoid as built by models.layers.act, relu6(x + 3) / 6 and hard-swish as
    (x / 6) * relu6(x + 3) (the clamp fuses into the ADD as RELU6; nothing fuses to HARD_SWISH),
    against two forms of the same function: clip(x / 6 + 0.5, 0, 1) = ReLU(max 1) after
    Rescaling(1/6, +0.5) ("clip_form", converts to RELU + MINIMUM; how models/ built it first),
    and Keras' `hard_sigmoid` activation (the converter fuses x * hard_sigmoid(x) into one
    HARD_SWISH op);
  - MobileNetV2 (ReLU6 only, no squeeze-excite) as the control.
Weights are random, but the BatchNorm statistics are first set by forward passes in training
mode over real images (`shapes`, resized): with untouched statistics the activations of a
random deep net shrink layer by layer (int8 scales down to 1e-8), which the XNNPACK delegate
rejects for some MULs - an artefact, not what a trained model looks like. The same images
calibrate. Each file is timed in --repeats interleaved rounds; the fastest round's p50 is kept.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.atomic import write_json  # noqa: E402
from serving.machine import measured_on  # noqa: E402


def xnnpack_coverage(data: bytes) -> dict:
    """Partitions and non-delegated ops of the default (XNNPACK) delegate for this model.

    After delegation the interpreter lists the original nodes plus one DELEGATE node per
    partition (`_get_ops_details`, a private but stable LiteRT API). An original node runs
    outside XNNPACK when its output is not a partition output yet feeds a partition, the graph
    output, or another such node."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    ops = it._get_ops_details()
    parts = [o for o in ops if o["op_name"] == "DELEGATE"]
    nodes = [o for o in ops if o["op_name"] != "DELEGATE"]
    p_in = {t for o in parts for t in o["inputs"]}
    p_out = {t for o in parts for t in o["outputs"]}
    sinks = p_in | {d["index"] for d in it.get_output_details()}
    consumers = collections.defaultdict(set)
    for o in nodes:
        for t in o["inputs"]:
            consumers[t].add(o["index"])
    outside: set[int] = set()
    changed = True
    while changed:
        changed = False
        for o in nodes:
            outs = set(o["outputs"])
            if o["index"] in outside or outs & p_out:
                continue
            if outs & sinks or any(consumers[t] & outside for t in outs):
                outside.add(o["index"])
                changed = True
    return {"nodes": len(nodes), "partitions": len(parts), "outside": len(outside),
            "outside_ops": dict(collections.Counter(o["op_name"] for o in nodes if o["index"] in outside)),
            "ops": dict(collections.Counter(o["op_name"] for o in nodes))}


def invoke_ms(data: bytes, runs: int, delegate: bool) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(5):
        it.invoke()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1e3)


def variant(model, how: str):
    """The same weights with hard-sigmoid/hard-swish written another way (module docstring).

    As built: shift = Rescaling(1, +3) -> relu6 = ReLU(6) -> Rescaling(1/6) (the gate), and
    hard-swish = Multiply([Rescaling(1/6)(x), relu6(shift(x))]).
    """
    import keras

    def is_sixth(layer) -> bool:   # Rescaling(1/6) without offset: the "/ 6" of both forms
        cfg = layer.get_config()
        return (isinstance(layer, keras.layers.Rescaling) and isinstance(cfg["scale"], float)
                and abs(cfg["scale"] - 1 / 6) < 1e-9 and cfg["offset"] == 0.0)

    def clone(layer):
        shift = isinstance(layer, keras.layers.Rescaling) and layer.name.endswith("_shift")
        relu6 = isinstance(layer, keras.layers.ReLU) and layer.name.endswith("_relu6")
        if how == "clip_form":      # clip(x / 6 + 0.5, 0, 1)
            if shift:
                return keras.layers.Rescaling(1 / 6, offset=0.5, name=layer.name)
            if relu6:
                return keras.layers.ReLU(max_value=1.0, name=layer.name)
        if how == "keras_hard_sigmoid":
            if shift:
                return keras.layers.Identity(name=layer.name)
            if relu6:
                return keras.layers.Activation("hard_sigmoid", name=layer.name)
        if how in ("clip_form", "keras_hard_sigmoid") and is_sixth(layer):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    out = keras.models.clone_model(model, clone_function=clone)
    out.set_weights(model.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (2, *model.input.shape[1:])).astype("float32")
    assert np.allclose(out(x), model(x), atol=1e-5), f"{how} is not the same function"
    return out


def realistic_images(size: int, n: int = 64) -> np.ndarray:
    """float32 (n, size, size, 3) pixels 0..255 from the shapes generator."""
    from pipeline.config import load_config
    from pipeline.data import DataConfig, load_dataset

    cfg = load_config(DataConfig, {"source": "shapes", "shapes.per_class": max(1, n // 10 + 1)})
    ds = load_dataset(cfg, image_size=(size, size), channels=3)
    return ds.train.images[:n].astype(np.float32)


def set_bn_statistics(model, images: np.ndarray, passes: int = 30, batch: int = 16) -> None:
    """Moving mean/var from the data (momentum 0.9: 30 passes leave ~4% of the init)."""
    for i in range(passes):
        j = (i * batch) % max(1, len(images) - batch + 1)
        model(images[j:j + batch], training=True)


def convert(model, kind: str, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind != "fp32":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind.startswith("int8"):
        c.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if kind == "int8_per_tensor":
            c._experimental_disable_per_channel = True
        if kind in ("int8_uint8io", "int8_int8io"):
            c.inference_input_type = c.inference_output_type = getattr(tf, kind[5:-2])   # "uint8" | "int8"
    with contextlib.redirect_stdout(io.StringIO()):
        return c.convert()


PLAN = {  # model -> [(hard-sigmoid variant, conversion kind)]
    "mobilenetv3_small": [("as_built", k) for k in ("fp32", "dynamic", "int8", "int8_uint8io",
                                                     "int8_int8io", "int8_per_tensor")]
    + [("keras_hard_sigmoid", "fp32"), ("keras_hard_sigmoid", "int8"),
       ("clip_form", "fp32"), ("clip_form", "int8")],
    "mobilenetv2": [("as_built", "fp32"), ("as_built", "int8")],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="bench/results/int8_investigation.json")
    args = ap.parse_args(argv)

    from models import create_model

    images = realistic_images(args.size)
    calib = images[:32]
    files = {}
    for name, plan in PLAN.items():
        base = create_model(name, num_classes=10, input_shape=(args.size, args.size, 3))
        set_bn_statistics(base, images)
        for how, kind in plan:
            files[f"{name}/{how}/{kind}"] = convert(base if how == "as_built" else variant(base, how),
                                                    kind, calib)
            print(f"converted {name}/{how}/{kind}", flush=True)
    rows = {key: {"size_kb": len(data) / 1024, **xnnpack_coverage(data), "xnnpack_ms": [],
                  "builtin_ms": []} for key, data in files.items()}
    for r in range(args.repeats):
        for key, data in files.items():
            rows[key]["xnnpack_ms"].append(invoke_ms(data, args.runs, True))
            rows[key]["builtin_ms"].append(invoke_ms(data, max(10, args.runs // 3), False))
        print(f"timing round {r + 1}/{args.repeats} done (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n{'file':<44}{'nodes':>6}{'parts':>6}{'outside':>8}{'XNNPACK ms':>11}{'builtin ms':>11}"
          "  ops outside XNNPACK")
    for key, row in rows.items():
        row["xnnpack_best_ms"], row["builtin_best_ms"] = min(row["xnnpack_ms"]), min(row["builtin_ms"])
        print(f"{key:<44}{row['nodes']:>6}{row['partitions']:>6}{row['outside']:>8}"
              f"{row['xnnpack_best_ms']:>11.2f}{row['builtin_best_ms']:>11.2f}  {row['outside_ops']}")
    write_json(args.json, {"size": args.size, "threads": 1, "machine": measured_on(), "files": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
