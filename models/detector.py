"""SSD (Liu et al. 2016, "SSD: Single Shot MultiBox Detector"; d2l 14.7 "Single Shot Multibox
Detection") on any registered backbone: a detection Task on a Backbone, as KerasHub splits them.

    model = create_detector("ssd", backbone="mobilenetv2", num_classes=3, input_shape=(128, 128, 3),
                            head="ssdlite", width=0.5)
    get_contract(model).detection.anchors()   # (A, 4) normalised corners, one set per scale

Graph: image (H, W, C float 0..255) -> normalize -> backbone's named feature maps (strides >= 8,
the deepest `max_backbone_maps` of them; the deepest one when a family has none that coarse)
-> `extra_blocks` stride-2 blocks (1x1 reduce, 3x3 stride 2) -> per scale a class head and a box
head: a 3x3 conv ("conv", d2l's cls_predictor/bbox_predictor) or a depthwise 3x3 + BN + ReLU6 +
1x1 conv ("ssdlite", MobileNetV2 paper section 6.3) -> per scale (B, h, w, k * n) reshaped to
(B, h * w * k, n), concatenated over scales -> one float32 output "detections"
(B, A, 4 + num_classes + 1): box offsets (models.boxes.encode_offsets), then class logits with
background at index 0. Anchors (models.boxes.multibox_prior) are made once from the feature-map
sizes, k = len(sizes) + len(ratios) - 1 per pixel, and stored in the data contract with the box
encoding, the matching IoU and the default NMS settings.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models import boxes as B
from models.contract import DataContract
from models.decoder import make_anchors
from models.factory import (
    check_input,
    input_stem,
    keras_or_default,
    labels_and_normalization,
    plain,
    resolve_config,
    set_contract,
)
from models.layers import act, bn, conv_bn_act
from models.options import OptionError, replace_checked, suggest
from models.yolo import YOLO
from models.yolo import build as build_yolo

DETECTORS = ("ssd", "yolo")
OUTPUT_LAYOUT = "offsets(4) then class logits (num_classes + 1, background first)"


@dataclass(frozen=True)
class SSD:
    """SSD options; any other create_detector keyword goes to the backbone family (width, ...)."""
    backbone: str = "mobilenetv2"
    head: Literal["conv", "ssdlite"] = "conv"
    head_channels: int = 128          # channels of the extra blocks (their 1x1 reduce has half)
    extra_blocks: int = 2             # stride-2 blocks after the backbone (stops at a 1x1 map)
    max_backbone_maps: int = 3        # backbone maps used (deepest first), strides >= 8
    min_scale: float = 0.1            # anchor sizes linear from min_scale to max_scale (SSD eq. 4)
    max_scale: float = 0.9
    sizes: tuple[tuple[float, ...], ...] = ()    # explicit per-scale sizes (overrides the scales)
    ratios: tuple[float, ...] = (1.0, 2.0, 0.5)  # r1 first: sizes pair with r1
    match_iou: float = 0.5            # anchor labelling threshold (d2l 14.4.3)
    # NMS settings stored in the contract and baked into exported files. The score floor is low,
    # as COCO evaluation and TF Object Detection API's TFLite exports have it, so a file's mAP is
    # the trained model's (0.3 cut the recall: mAP 0.44 vs 0.54 measured); apps filter higher
    # (`serving detect score=`, the demo's slider)
    score_threshold: float = 0.05
    nms_iou: float = 0.45
    max_detections: int = 100

    def validate(self) -> None:
        checks = [(self.head_channels >= 8, "head_channels must be >= 8"),
                  (self.extra_blocks >= 0, "extra_blocks must be >= 0"),
                  (self.max_backbone_maps >= 1, "max_backbone_maps must be >= 1"),
                  (0 < self.min_scale <= self.max_scale <= 1.5, "need 0 < min_scale <= max_scale <= 1.5"),
                  (len(self.ratios) >= 1 and min(self.ratios) > 0, "ratios must be positive"),
                  (all(len(s) >= 1 and min(s) > 0 for s in self.sizes), "sizes must be positive"),
                  (0 < self.match_iou < 1, "match_iou must be in (0, 1)"),
                  (0 <= self.score_threshold < 1, "score_threshold must be in [0, 1)"),
                  (0 < self.nms_iou <= 1, "nms_iou must be in (0, 1]"),
                  (self.max_detections >= 1, "max_detections must be >= 1")]
        for ok, message in checks:
            if not ok:
                raise OptionError(f"ssd: {message}")


def split_options(name: str, overrides: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(validated SSD or YOLO options, backbone family options) from create_detector's keywords."""
    if name not in DETECTORS:
        raise OptionError(f"unknown detector {name!r}{suggest(name, DETECTORS)}; detectors: "
                          f"{', '.join(DETECTORS)}")
    kind = {"ssd": SSD, "yolo": YOLO}[name]
    own = {f.name for f in dataclasses.fields(kind)}
    opts = replace_checked(kind(), {k: v for k, v in overrides.items() if k in own}, f"option for {name}")
    opts.validate()
    family_opts = {k: v for k, v in overrides.items() if k not in own}
    resolve_config(opts.backbone, family_opts)   # unknown backbone / option -> OptionError
    return opts, family_opts


def _stride_of(key: str) -> int:
    return int(key[len("stride"):]) if key.startswith("stride") and key[6:].isdigit() else 0


def pick_maps(features: dict[str, Any], max_maps: int) -> list[Any]:
    """The backbone maps the heads sit on, shallow to deep: strides >= 8, the deepest max_maps."""
    coarse = [v for key, v in features.items() if _stride_of(key) >= 8]
    return coarse[-max_maps:] or [next(reversed(features.values()))]


def extra_block(k: Any, x: Any, channels: int, name: str, lite: bool) -> Any:
    """(B, h, w, c) -> (B, ceil(h/2), ceil(w/2), channels): 1x1 reduce then a 3x3 stride-2 conv
    (depthwise + 1x1 for ssdlite), BN + ReLU after each (SSD's extra feature layers)."""
    x = conv_bn_act(k, x, channels // 2, 1, f"{name}_reduce")
    if not lite:
        return conv_bn_act(k, x, channels, 3, f"{name}_down", stride=2)
    x = k.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name=f"{name}_dw_conv")(x)
    x = act(k, bn(k, x, f"{name}_dw_bn"), "relu6", f"{name}_dw_relu6")
    return conv_bn_act(k, x, channels, 1, f"{name}_project", activation="relu6")


def predictor(k: Any, x: Any, outputs: int, name: str, lite: bool) -> Any:
    """(B, h, w, c) -> (B, h, w, outputs): a 3x3 conv, or depthwise 3x3 + BN + ReLU6 + 1x1."""
    if lite:
        x = k.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw_conv")(x)
        x = act(k, bn(k, x, f"{name}_dw_bn"), "relu6", f"{name}_dw_relu6")
        return k.layers.Conv2D(outputs, 1, name=f"{name}_conv")(x)
    return k.layers.Conv2D(outputs, 3, padding="same", name=f"{name}_conv")(x)


def scale_sizes(ssd: SSD, num_scales: int) -> list[tuple[float, ...]]:
    if ssd.sizes:
        if len(ssd.sizes) != num_scales:
            raise OptionError(f"ssd: sizes has {len(ssd.sizes)} entries but the model has "
                              f"{num_scales} scales; give one tuple of sizes per scale")
        return [tuple(s) for s in ssd.sizes]
    return B.ssd_sizes(num_scales, ssd.min_scale, ssd.max_scale)


def anchors_of(contract: DataContract) -> np.ndarray:
    """The anchors a detector's contract carries (regenerated from the spec if not stored)."""
    if contract.task != "detection" or "anchor_spec" not in contract.extra:
        raise OptionError("this model's contract has no anchors: not a detector")
    return contract.detection.anchors()


def create_detector(name: str, *, num_classes: int, input_shape: Sequence[int],
                    labels: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None, keras_module: Any = None,
                    **overrides: Any) -> Any:
    """Build detector `name` ("ssd" or "yolo") on `backbone=` any registered family; returns a
    keras.Model whose output "detections" is (B, A, 4 + num_classes + 1) for ssd (models.detector)
    and (B, A, 4 * reg_max + num_classes) for yolo (models.yolo), with its contract attached."""
    opts, family_opts = split_options(name, overrides)
    cfg = resolve_config(opts.backbone, family_opts)
    shape = check_input(opts.backbone, cfg, input_shape)
    labels, mean, std = labels_and_normalization(num_classes, labels, mean, std, shape[2])

    k = keras_or_default(keras_module)
    inputs, x = input_stem(k, shape, mean, std)
    if name == "yolo":
        out, extra = build_yolo(k, cfg.backbone(k, x), num_classes, shape, opts)
        return _finish(k.Model(inputs, out, name=f"{name}_{opts.backbone}"), name, opts, extra, shape,
                       labels, mean, std, num_classes, overrides)
    lite = opts.head == "ssdlite"
    maps = pick_maps(cfg.backbone(k, x), opts.max_backbone_maps)
    for i in range(opts.extra_blocks):
        if min(maps[-1].shape[1], maps[-1].shape[2]) <= 1:
            break
        maps.append(extra_block(k, maps[-1], opts.head_channels, f"extra{i + 1}", lite))
    sizes = scale_sizes(opts, len(maps))
    per_pixel = [B.anchors_per_pixel(s, opts.ratios) for s in sizes]
    cls_out, box_out = [], []
    for i, (fmap, n) in enumerate(zip(maps, per_pixel), 1):
        h, w = int(fmap.shape[1]), int(fmap.shape[2])
        c = predictor(k, fmap, n * (num_classes + 1), f"det{i}_cls", lite)    # (B, h, w, n*(C+1))
        b = predictor(k, fmap, n * 4, f"det{i}_box", lite)                     # (B, h, w, n*4)
        cls_out.append(k.layers.Reshape((h * w * n, num_classes + 1), name=f"det{i}_cls_flat")(c))
        box_out.append(k.layers.Reshape((h * w * n, 4), name=f"det{i}_box_flat")(b))
    cat = (lambda xs, nm: xs[0]) if len(maps) == 1 else (
        lambda xs, nm: k.layers.Concatenate(axis=1, name=nm)(xs))
    offsets, logits = cat(box_out, "det_boxes"), cat(cls_out, "det_logits")   # (B, A, 4), (B, A, C+1)
    out = k.layers.Concatenate(axis=-1, dtype="float32", name="detections")([offsets, logits])
    model = k.Model(inputs, out, name=f"{name}_{opts.backbone}")

    spec = {"feature_maps": [[int(m.shape[1]), int(m.shape[2])] for m in maps],
            "sizes": [list(s) for s in sizes], "ratios": list(opts.ratios),
            "aspect": shape[0] / shape[1], "anchors_per_pixel": per_pixel}
    extra = {"anchor_spec": spec, "encoding": {"type": "center_offsets", "variances": list(B.VARIANCES)},
             "output_layout": OUTPUT_LAYOUT, "match_iou": opts.match_iou}
    return _finish(model, name, opts, extra, shape, labels, mean, std, num_classes, overrides)


def _finish(model: Any, name: str, opts: Any, extra: dict[str, Any], shape: tuple[int, int, int],
            labels: Any, mean: Any, std: Any, num_classes: int, overrides: dict[str, Any]) -> Any:
    """Attach the detector's contract: the anchors made from extra's spec, box format, NMS."""
    anchors = make_anchors(extra["anchor_spec"])
    extra = {**extra, "num_anchors": int(len(anchors)), "anchors": anchors.round(6).tolist(),
             "box_format": "rel_xyxy",
             "nms": {"score_threshold": opts.score_threshold, "iou_threshold": opts.nms_iou,
                     "max_detections": opts.max_detections}}
    contract = DataContract(
        input_shape=shape, labels=labels, mean=mean, std=std, task="detection", output="logits",
        architecture={"name": name, "num_classes": num_classes, "input_shape": list(shape),
                      "overrides": plain(overrides)}, extra=extra)
    return set_contract(model, contract)
