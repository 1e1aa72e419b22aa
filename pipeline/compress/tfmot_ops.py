"""tensorflow-model-optimization on the tf_keras twin: pruning wrappers, QAT annotation, and the
way back to plain weights. Imported ONLY by pipeline.compress.worker (its own process): importing
tfmot sets TF_USE_LEGACY_KERAS=1 for the whole process.

Why per layer: `quantize_model(twin)` and `prune_low_magnitude(twin)` on the whole model fail for
every family (the `normalize` layer is a Rescaling, which tfmot does not handle), so the twin is
cloned and each layer is wrapped on its own (../shared/STACK.md, "Compression"):
  - pruning: Conv2D and Dense kernels, except the layers kept dense (first conv, classifier by
    default); DepthwiseConv2D stays dense, as tfmot does;
  - QAT: layers tfmot's 8-bit registry supports are annotated as they are; BatchNormalization right
    after a conv too (so tfmot and the converter fold it); DepthwiseConv2D kernels are fake-quantized
    per output channel (DepthwiseQuant), as TFLite quantizes them; Rescaling, Multiply and standalone BN
    get OutputQuant (fake-quantize the output only: 8-bit, per tensor, asymmetric, moving-average
    range); AveragePooling2D gets NoQuant (the converter needs its input and output on one scale).
    An activation tfmot cannot quantize (selu, softplus, ...) or an unknown layer type fails
    before any training, naming the layer.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras

from models.options import OptionError, suggest
from pipeline.compress.config import CompressError
from pipeline.compress.qat_ranges import RangeWarmup

L = tf_keras.layers
qk = tfmot.quantization.keras
QAT_ACTIVATIONS = ("relu", "relu6", "swish", "gelu", "linear", "softmax", "sigmoid", "tanh")
CONVS = (L.Conv2D, L.DepthwiseConv2D)


class OutputQuant(qk.QuantizeConfig):
    """Fake-quantize only the layer's output (no weights): for Rescaling/Multiply/lone BN."""

    def get_weights_and_quantizers(self, layer: Any) -> list:
        return []

    def get_activations_and_quantizers(self, layer: Any) -> list:
        return []

    def set_quantize_weights(self, layer: Any, quantize_weights: Any) -> None:
        pass

    def set_quantize_activations(self, layer: Any, quantize_activations: Any) -> None:
        pass

    def get_output_quantizers(self, layer: Any) -> list:
        return [qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                     narrow_range=False)]

    def get_config(self) -> dict:
        return {}


class NoQuant(OutputQuant):
    """Leave the layer alone: its input's scale carries through (AveragePooling2D)."""

    def get_output_quantizers(self, layer: Any) -> list:
        return []


class QuantNormalize(L.Layer):
    """The model's input Rescaling (x * scale + offset on the 0..255 image) with each tensor
    fake-quantized over its exact range, known from 0..255 and the constants: the converter then
    makes it an int8 MUL and ADD from the QAT graph alone, with no calibration (which would
    re-derive the ranges that QAT learned). Same for both the graph and the file."""

    def __init__(self, scale: Any, offset: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset

    def call(self, x: Any) -> Any:
        import tensorflow as tf

        c = x.shape[-1]
        s = np.broadcast_to(np.asarray(self.scale, np.float32), (c,)).astype(np.float32)
        o = np.broadcast_to(np.asarray(self.offset, np.float32), (c,)).astype(np.float32)
        lo, hi = np.minimum(0.0, 255.0 * s), np.maximum(0.0, 255.0 * s)     # x * s, x in 0..255
        vars_fq = tf.quantization.fake_quant_with_min_max_vars
        args_fq = tf.quantization.fake_quant_with_min_max_args
        sq = vars_fq(tf.constant(s), float(min(0.0, s.min())), float(max(0.0, s.max())))
        oq = vars_fq(tf.constant(o), float(min(0.0, o.min())), float(max(0.0, o.max())))
        y = args_fq(x * sq, min=float(lo.min()), max=float(hi.max()))
        return args_fq(y + oq, min=float(min(0.0, (lo + o).min())), max=float(max(0.0, (hi + o).max())))

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class DepthwiseKernelQuantizer(qk.quantizers.LastValueQuantizer):
    """Fake-quantize a depthwise kernel (kh, kw, C, m) per output channel, as TFLite quantizes it
    (its filter is (1, kh, kw, C*m), scales along the last axis). tfmot's own per-axis conv
    quantizer uses the kernel's last axis, m (1 in MobileNets): one scale for all channels, which
    the converter cannot keep once it folds the BN scale (per channel) into the kernel."""

    def __init__(self) -> None:
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape: Any, name: str, layer: Any) -> dict:
        n = int(tensor_shape[-2]) * int(tensor_shape[-1])   # C*m output channels
        init = tf_keras.initializers.Constant
        return {"min_var": layer.add_weight(name + "_min", shape=(n,), initializer=init(-6.0),
                                            trainable=False),
                "max_var": layer.add_weight(name + "_max", shape=(n,), initializer=init(6.0),
                                            trainable=False)}

    def __call__(self, inputs: Any, training: Any, weights: dict, **kwargs: Any) -> Any:
        import tensorflow as tf

        kh, kw, c, m = inputs.shape                    # (kh, kw, C, m) -> (kh, kw, 1, C*m) and back
        flat = tf.reshape(inputs, (kh, kw, 1, c * m))
        return tf.reshape(super().__call__(flat, training, weights, **kwargs), (kh, kw, c, m))

    def get_config(self) -> dict:
        return {}


class DepthwiseQuant(qk.QuantizeConfig):
    """tfmot's DepthwiseConv2D config (kernel and activation), with DepthwiseKernelQuantizer."""

    def __init__(self) -> None:
        self.weight_quantizer = DepthwiseKernelQuantizer()
        self.activation_quantizer = qk.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)

    def get_weights_and_quantizers(self, layer: Any) -> list:
        return [(layer.depthwise_kernel, self.weight_quantizer)]

    def get_activations_and_quantizers(self, layer: Any) -> list:
        return [(layer.activation, self.activation_quantizer)]

    def set_quantize_weights(self, layer: Any, quantize_weights: Any) -> None:
        layer.depthwise_kernel = quantize_weights[0]

    def set_quantize_activations(self, layer: Any, quantize_activations: Any) -> None:
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer: Any) -> list:
        return []

    def get_config(self) -> dict:
        return {}


class PerChannelRegistry(qk.default_8bit.Default8BitQuantizeRegistry):
    """tfmot's 8-bit registry with DepthwiseQuant for DepthwiseConv2D. Given through the scheme
    (not per layer at annotation) so tfmot's conv-BN-ReLU layout transforms still apply."""

    def get_quantize_config(self, layer: Any) -> Any:
        if type(layer) is L.DepthwiseConv2D:
            return DepthwiseQuant()
        return super().get_quantize_config(layer)


class PerChannelScheme(qk.default_8bit.Default8BitQuantizeScheme):
    def get_quantize_registry(self) -> Any:
        return PerChannelRegistry()


SCOPE = {"OutputQuant": OutputQuant, "NoQuant": NoQuant, "QuantNormalize": QuantNormalize,
         "DepthwiseQuant": DepthwiseQuant, "DepthwiseKernelQuantizer": DepthwiseKernelQuantizer}


def _kernel_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if isinstance(layer, (*CONVS, L.Dense))]


def _input_layer(layer: Any) -> Any:
    return layer.input._keras_history.layer   # the layer whose output feeds `layer`


def dense_names(model: Any, dense: Sequence[str], classifier: Sequence[str]) -> set[str]:
    """Names of the layers prune.dense keeps dense; an unknown name is an OptionError."""
    kernels = _kernel_layers(model)
    names = [layer.name for layer in model.layers]
    keep: set[str] = set()
    for item in dense:
        if item == "none":
            continue
        if item == "first":
            keep |= {next(layer.name for layer in kernels if isinstance(layer, L.Conv2D))}
        elif item == "classifier":
            keep |= {n for n in classifier if n in names}
        elif item in names:
            keep.add(item)
        else:
            raise OptionError(f"prune.dense: {model.name} has no layer {item!r}"
                              f"{suggest(item, names + ['first', 'classifier', 'none'])}")
    return keep


def prune_plan(model: Any, dense: Sequence[str], classifier: Sequence[str]) -> list[str]:
    """The layers that will be pruned: Conv2D and Dense kernels, minus those kept dense."""
    keep = dense_names(model, dense, classifier)
    plan = [layer.name for layer in _kernel_layers(model)
            if not isinstance(layer, L.DepthwiseConv2D) and layer.name not in keep]
    if not plan:
        raise OptionError(f"prune: no layer of {model.name} is left to prune (prune.dense={list(dense)})")
    return plan


def wrap_pruning(model: Any, plan: Sequence[str], *, target: float, schedule: str,
                 structure: str, begin_step: int, end_step: int, frequency: int) -> Any:
    """A clone of the twin whose `plan` layers are prune_low_magnitude wrappers (same weights)."""
    sp = tfmot.sparsity.keras
    if schedule == "constant" or structure == "2:4":
        sched = sp.ConstantSparsity(target, begin_step=begin_step, frequency=frequency)
    else:   # Zhu & Gupta: s_t = s_f (1 - (1 - (t - t0) / (n dt))^3)
        sched = sp.PolynomialDecay(0.0, target, begin_step=begin_step, end_step=end_step,
                                   power=3, frequency=frequency)
    extra = {"sparsity_m_by_n": (2, 4)} if structure == "2:4" else {}
    wanted = set(plan)
    if structure == "2:4":   # tfmot groups 4 weights along the input channels; fewer or a remainder
        for layer in model.layers:   # leaves the kernel silently not 2:4 sparse
            channels = layer.get_weights()[0].shape[-2] if layer.name in wanted else 0
            if channels % 4:
                raise OptionError(f"prune.structure=2:4: layer {layer.name} has {channels} input channels, "
                                  f"not a multiple of 4; keep it dense (prune.dense=first,classifier,"
                                  f"{layer.name}) or prune it unstructured")

    def clone(layer: Any) -> Any:
        if layer.name in wanted:
            return sp.prune_low_magnitude(layer, pruning_schedule=sched, **extra)
        return layer
    return tf_keras.models.clone_model(model, clone_function=clone)   # same layer objects: same weights


def quantize_plan(model: Any) -> dict[str, str]:
    """layer name -> how it is quantized ("tfmot", "output", "none", "normalize": the input
    Rescaling, as QuantNormalize); OptionError naming the
    first layer tfmot cannot handle."""
    registry = qk.default_8bit.Default8BitQuantizeRegistry()
    plan: dict[str, str] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, L.InputLayer):
            continue
        if isinstance(layer, L.Activation):
            name = getattr(layer.activation, "__name__", str(layer.activation))
            if name not in QAT_ACTIVATIONS:
                raise OptionError(f"qat: layer {layer.name!r} (Activation {name!r}) cannot be "
                                  f"quantized by tfmot's 8-bit scheme (it handles "
                                  f"{', '.join(QAT_ACTIVATIONS)}); retrain with another activation")
            plan[layer.name] = "tfmot"
        elif isinstance(layer, L.BatchNormalization):
            plan[layer.name] = "tfmot" if isinstance(_input_layer(layer), CONVS) else "output"
        elif isinstance(layer, L.Rescaling) and isinstance(_input_layer(layer), L.InputLayer):
            plan[layer.name] = "normalize"
        elif isinstance(layer, (L.Rescaling, L.Multiply)):
            plan[layer.name] = "output"
        elif isinstance(layer, L.AveragePooling2D):
            plan[layer.name] = "none"
        elif registry.supports(layer):
            plan[layer.name] = "tfmot"
        else:
            raise OptionError(f"qat: layer {layer.name!r} ({kind}) is not supported by tfmot's "
                              "8-bit quantization")
    return plan


def needs_calibration(plan: dict[str, str]) -> bool:
    """Whether the QAT graph's int8 file needs a representative dataset: only if some tensor has
    no range of its own in the graph, i.e. without the quantized input Rescaling, or with a
    NoQuant layer (AveragePooling2D: DenseNet's transitions). Converting such a graph from its
    ranges alone leaves float ops (densenet_small: 102 float32 tensors)."""
    kinds = set(plan.values())
    return "normalize" not in kinds or "none" in kinds


def wrap_qat(model: Any, plan: dict[str, str], *, per_tensor: bool, preserve_sparsity: bool) -> Any:
    """The twin annotated per layer (quantize_plan), then quantize_apply'd."""
    configs = {"output": OutputQuant, "none": NoQuant}

    def annotate(layer: Any) -> Any:
        how = plan.get(layer.name)
        if how is None:
            return layer
        if how == "normalize":   # no weights: the twin's weight order is unchanged
            layer = QuantNormalize(layer.scale, layer.offset, name=layer.name)
            how = "none"
        config = configs[how]() if how in configs else None
        return qk.quantize_annotate_layer(layer, quantize_config=config)
    annotated = tf_keras.models.clone_model(model, clone_function=annotate)
    if preserve_sparsity:   # Default8BitQuantizeScheme whose weight quantizers keep the zeros
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme(
            disable_per_axis=per_tensor)
    elif per_tensor:
        scheme = qk.default_8bit.Default8BitQuantizeScheme(disable_per_axis=True)
    else:
        scheme = PerChannelScheme()
    with qk.quantize_scope(SCOPE):
        qat = qk.quantize_apply(annotated, scheme)
    for layer in qat.layers:   # tfmot's input quantizer: the image is 0..255 from the start
        if type(layer).__name__ == "QuantizeLayer" and isinstance(_input_layer(layer), L.InputLayer):
            for w in layer.weights:
                bound = w.name.rpartition("/")[2].split(":")[0].rpartition("_")[2]
                if bound in ("min", "max"):
                    w.assign(0.0 if bound == "min" else 255.0)
    return qat


def update_pruning_step() -> Any:
    return tfmot.sparsity.keras.UpdatePruningStep()


def plain_weights(model: Any, keeper: Any) -> list[np.ndarray]:
    """The fitted (wrapped) model's weights in `keeper`'s order (a Keras 3 model of the same
    architecture). A wrapper's own variables are named after it ("quant_stem_conv/kernel_min"),
    its layer's after the layer ("stem_conv/kernel:0"; a QuantizeWrapper holds that kernel
    itself), so each layer's weights are those named after it, in order (trainable first, as
    both Keras list them; tf_keras' "depthwise_kernel" is Keras 3's "kernel"). Pruning masks
    (prune wrapper) and sparsity masks (prune-preserving QAT) are applied: exact zeros."""
    found: dict[str, list[np.ndarray]] = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        masks: dict[int, Any] = {}
        for w, mask, _ in getattr(layer, "pruning_vars", ()):          # prune_low_magnitude
            masks[id(w)] = mask
        for w, _, qvars in getattr(layer, "_weight_vars", ()):          # QuantizeWrapper
            if isinstance(qvars, dict) and "sparsity_mask" in qvars:
                masks[id(w)] = qvars["sparsity_mask"]
        for w in layer.weights:
            if w.name.partition("/")[0] == inner.name:
                value = w.numpy()
                found.setdefault(inner.name, []).append(
                    value * masks[id(w)].numpy() if id(w) in masks else value)
    out: list[np.ndarray] = []
    for layer in keeper.layers:
        if not layer.weights:
            continue
        got = found.get(layer.name, [])
        shapes = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in got] != shapes:
            raise CompressError(f"compress: the fitted model's weights for layer {layer.name!r} "
                                f"({[v.shape for v in got]}) do not match the model's ({shapes})")
        out += got
    return out


TINY = 1e-6   # the least |range| or BN gamma the converter is given (see refresh_weight_ranges)


def refresh_weight_ranges(model: Any) -> None:
    """Set every weight quantizer's range to its weight's current one. tfmot's LastValue
    quantizer records the range in the forward pass, before that step's update, so a trained
    model's stored ranges are one step stale: the graph clips or under-uses them, while the
    converter derives each (BN-folded) kernel's scales from the values themselves.

    No per-channel scale may be 0, or the converter fails ("scale out of expressed type range")
    and leaves float ops in the int8 file: a kernel channel of zeros (pruned away) gets the
    range +-TINY, and a BatchNormalization gamma of exactly 0 (ResNet's zero-init residual BN,
    left at 0 when its channel never got a gradient) becomes TINY before the converter folds it
    into the kernel: that channel's output stays its beta, to within 1e-6."""
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        if isinstance(inner, L.BatchNormalization) and inner.scale:
            gamma = inner.gamma.numpy()
            if np.any(gamma == 0):
                inner.gamma.assign(np.where(gamma == 0, TINY, gamma).astype(gamma.dtype))
        for w, quantizer, qvars in getattr(layer, "_weight_vars", ()):   # QuantizeWrapper
            if isinstance(quantizer, qk.quantizers.LastValueQuantizer) and isinstance(qvars, dict):
                quantizer(w, True, qvars)   # training=True assigns min_var/max_var from `w`
                lo, hi = qvars["min_var"], qvars["max_var"]
                lo.assign(np.minimum(lo.numpy(), -TINY))
                hi.assign(np.maximum(hi.numpy(), TINY))


def save_qat_graph(model: Any, path: str, input_shape: Sequence[int]) -> None:
    """The QAT model as a SavedModel (serving_default: image -> probs); the TFLite converter
    and the export's reference both read it without tfmot."""
    import tensorflow as tf

    fn = tf.function(lambda image: {"probs": model(image, training=False)},
                     input_signature=[tf.TensorSpec((None, *input_shape), tf.float32, name="image")])
    with qk.quantize_scope(SCOPE):
        tf.saved_model.save(model, path, signatures={"serving_default": fn.get_concrete_function()})


def callbacks_for(method: str) -> Callable[[Any], list[Any]] | None:
    if method == "prune":
        return lambda k: [update_pruning_step()]

    return lambda k: [RangeWarmup()]
