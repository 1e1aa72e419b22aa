"""A YOLO-style detector (Redmon et al. 2016's S x S grid, as in d2l 14's YOLO aside; the
anchor-free head of YOLOX / YOLOv8: Ge et al. 2021, "YOLOX"; Feng et al. 2021, "TOOD";
Li et al. 2020, "Generalized Focal Loss") on any registered backbone.

    model = create_detector("yolo", backbone="resnet18", num_classes=3, input_shape=(128, 128, 3),
                            width=0.25)
    get_contract(model).detection   # anchor points (cell centres), strides, ltrb_dfl encoding

Graph: image -> normalize -> backbone maps at strides 8/16/32 (the deepest three with stride
>= 8; stride-2 blocks make the missing coarser ones) -> PAN-FPN neck (Lin et al. 2017 FPN's
top-down path + PANet's bottom-up path, Liu et al. 2018): 1x1 laterals to `channels`, upsample +
concatenate + 3x3 conv going down, 3x3 stride-2 conv + concatenate + 3x3 conv going back up ->
per scale a decoupled head: a box branch (`head_convs` 3x3 convs -> 4 * reg_max bins) and a class
branch (`head_convs` 3x3 convs -> C logits, bias -log((1 - p) / p), p = prior: sigmoid scores
start near p, so the first steps are not swamped by the background cells) -> per scale
(B, h * w, 4R + C), concatenated -> "detections" (B, A, 4R + C).

Each cell of an S x S map is ONE anchor point (its centre); its anchor box, stored in the
contract like SSD's anchors, is the `multibox_prior` square of side = the map's stride, and the
box is the four distances from the centre to the box's sides in those units (R-bin
distributions, decoded by models.decoder). A 128 px input gives 16x16 + 8x8 + 4x4 = 336 points
(SSD's default: 3,000+ anchors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.decoder import ltrb_encoding
from models.layers import conv_bn_act
from models.options import OptionError

OUTPUT_LAYOUT = "DFL logits (4 sides x reg_max bins: left, top, right, bottom) then class logits (sigmoid)"
STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class YOLO:
    """YOLO options; any other create_detector keyword goes to the backbone family (width, ...)."""
    backbone: str = "resnet18"
    channels: int = 64        # neck and head channels
    head_convs: int = 2       # 3x3 conv + BN + activation per branch before the 1x1 predictor
    activation: str = "relu"  # relu | relu6 | silu | hard_swish (relu: cheapest in int8)
    reg_max: int = 8          # DFL bins per side: distances 0 .. reg_max - 1 strides
    prior: float = 0.01       # initial class score
    score_threshold: float = 0.05   # NMS settings stored in the contract (as models.detector.SSD)
    nms_iou: float = 0.5
    max_detections: int = 100

    def validate(self) -> None:
        checks = [(self.channels >= 8, "channels must be >= 8"),
                  (self.head_convs >= 0, "head_convs must be >= 0"),
                  (self.activation in ("relu", "relu6", "silu", "hard_swish"),
                   "activation must be relu, relu6, silu or hard_swish"),
                  (2 <= self.reg_max <= 32, "reg_max must be in 2..32"),
                  (0 < self.prior < 1, "prior must be in (0, 1)"),
                  (0 <= self.score_threshold < 1, "score_threshold must be in [0, 1)"),
                  (0 < self.nms_iou <= 1, "nms_iou must be in (0, 1]"),
                  (self.max_detections >= 1, "max_detections must be >= 1")]
        for ok, message in checks:
            if not ok:
                raise OptionError(f"yolo: {message}")


def _stride_of(key: str) -> int:
    return int(key[6:]) if key.startswith("stride") and key[6:].isdigit() else 0


def pyramid(k: Any, features: dict[str, Any], opts: YOLO) -> list[Any]:
    """Three backbone maps, shallow to deep: the deepest three with stride >= 8 (any that are
    missing: 3x3 stride-2 blocks on the deepest, as SSD's extra layers)."""
    maps = [v for key, v in features.items() if _stride_of(key) >= 8][-3:]
    maps = maps or [next(reversed(features.values()))]
    for i in range(3 - len(maps)):
        maps.append(conv_bn_act(k, maps[-1], max(opts.channels, int(maps[-1].shape[-1])), 3,
                                f"extra{i + 1}", stride=2, activation=opts.activation))
    return maps


def _resize_to(k: Any, x: Any, like: Any, name: str) -> Any:
    """Nearest 2x upsampling of x, cropped to like's h, w (odd map sizes: ceil(h / 2) * 2 > h)."""
    x = k.layers.UpSampling2D(2, interpolation="nearest", name=name)(x)
    dh, dw = int(x.shape[1]) - int(like.shape[1]), int(x.shape[2]) - int(like.shape[2])
    return k.layers.Cropping2D(((0, dh), (0, dw)), name=f"{name}_crop")(x) if dh or dw else x


def pan_fpn(k: Any, maps: list[Any], opts: YOLO) -> list[Any]:
    """[P3, P4, P5] backbone maps -> [N3, N4, N5] neck maps, `channels` each, same sizes."""
    c, a = opts.channels, opts.activation
    lat = [conv_bn_act(k, m, c, 1, f"neck_lat{i + 3}", activation=a) for i, m in enumerate(maps)]
    top = [lat[2]]                                    # top-down: deep semantics to the fine maps
    for i in (1, 0):
        up = _resize_to(k, top[0], lat[i], f"neck_up{i + 3}")
        cat = k.layers.Concatenate(name=f"neck_td{i + 3}_cat")([lat[i], up])
        top.insert(0, conv_bn_act(k, cat, c, 3, f"neck_td{i + 3}", activation=a))
    out = [top[0]]                                    # bottom-up: fine localisation to the deep maps
    for i in (1, 2):
        down = conv_bn_act(k, out[-1], c, 3, f"neck_down{i + 3}", stride=2, activation=a)
        cat = k.layers.Concatenate(name=f"neck_bu{i + 3}_cat")([top[i], down])
        out.append(conv_bn_act(k, cat, c, 3, f"neck_bu{i + 3}", activation=a))
    return out


def head(k: Any, x: Any, i: int, num_classes: int, opts: YOLO) -> tuple[Any, Any]:
    """Decoupled head on one neck map (B, h, w, c) -> box bins (B, h*w, 4R), logits (B, h*w, C)."""
    import math

    h, w = int(x.shape[1]), int(x.shape[2])
    b = c = x
    for j in range(opts.head_convs):
        b = conv_bn_act(k, b, opts.channels, 3, f"det{i}_box{j + 1}", activation=opts.activation)
        c = conv_bn_act(k, c, opts.channels, 3, f"det{i}_cls{j + 1}", activation=opts.activation)
    b = k.layers.Conv2D(4 * opts.reg_max, 1, bias_initializer=k.initializers.Constant(1.0),
                        name=f"det{i}_box_conv")(b)
    bias = -math.log((1 - opts.prior) / opts.prior)
    c = k.layers.Conv2D(num_classes, 1, bias_initializer=k.initializers.Constant(bias),
                        name=f"det{i}_cls_conv")(c)
    return (k.layers.Reshape((h * w, 4 * opts.reg_max), name=f"det{i}_box_flat")(b),
            k.layers.Reshape((h * w, num_classes), name=f"det{i}_cls_flat")(c))


def build(k: Any, features: dict[str, Any], num_classes: int, shape: tuple[int, int, int], opts: YOLO
          ) -> tuple[Any, dict[str, Any]]:
    """The "detections" output (B, A, 4R + C) and the contract's extra block minus nms/anchors."""
    neck = pan_fpn(k, pyramid(k, features, opts), opts)
    outs = [head(k, x, i, num_classes, opts) for i, x in enumerate(neck, 1)]
    boxes = k.layers.Concatenate(axis=1, name="det_boxes")([b for b, _ in outs])     # (B, A, 4R)
    logits = k.layers.Concatenate(axis=1, name="det_logits")([c for _, c in outs])   # (B, A, C)
    out = k.layers.Concatenate(axis=-1, dtype="float32", name="detections")([boxes, logits])
    sizes = [(int(m.shape[1]), int(m.shape[2])) for m in neck]
    strides = [shape[0] / h for h, _ in sizes]   # 8, 16, 32 for sizes divisible by 32
    spec = {"feature_maps": [list(s) for s in sizes], "sizes": [[s / shape[0]] for s in strides],
            "ratios": [1.0], "aspect": shape[0] / shape[1], "anchors_per_pixel": [1] * len(sizes),
            "strides": strides, "anchor_points": True}
    return out, {"anchor_spec": spec, "encoding": ltrb_encoding(opts.reg_max), "output_layout": OUTPUT_LAYOUT}
