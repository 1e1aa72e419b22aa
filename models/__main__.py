"""python -m models list | summary NAME [input_shape=H,W,C] [num_classes=N] [option=value ...]

`summary ssd backbone=mobilenetv2 head=ssdlite ...` summarises a detector (models.detector),
with its anchors per image; `summary yolo backbone=resnet18 width=0.25 ...` (models.yolo) with
its cells per scale."""
from __future__ import annotations

import argparse
import os
import sys

from models.options import OptionError, parse_kv

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description="The model registry.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print every registered model name, one per line")
    p = sub.add_parser("summary", help="parameters, FLOPs and per-stage output shapes",
                       description="e.g. python -m models summary resnet18 input_shape=96,96,1 "
                                   "num_classes=10 width=0.5; a detector: python -m models "
                                   "summary ssd backbone=mobilenetv2 input_shape=128,128,3 "
                                   "num_classes=3 head=ssdlite width=0.5")
    p.add_argument("name")
    p.add_argument("options", nargs="*", metavar="key=value",
                   help="input_shape=H,W,C (default 224,224,3), num_classes=N (default 1000), "
                        "or any family option (width, dropout, ...)")
    args = parser.parse_args(argv)

    from models.detector import DETECTORS, create_detector
    from models.factory import create_model, get_contract, list_models

    if args.command == "list":
        print("\n".join(list_models()))
        return 0
    from models.summary import summary_text
    try:
        opts = parse_kv(args.options)
        shape = opts.pop("input_shape", (224, 224, 3))
        classes = opts.pop("num_classes", 1000)
        if args.name in DETECTORS:
            model = create_detector(args.name, num_classes=classes, input_shape=shape, **opts)
        else:
            model = create_model(args.name, num_classes=classes, input_shape=shape, **opts)
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_text(model))
    if args.name in DETECTORS:
        settings = get_contract(model).detection
        spec = settings.anchor_spec
        if settings.encoding == "ltrb_dfl":   # yolo: one anchor point per cell of each S x S grid
            strides = [f"{s:g}" for s in spec["strides"]]
            cells = ", ".join(f"{h}x{w} (stride {s})" for (h, w), s in zip(spec["feature_maps"], strides))
            print(f"{settings.num_anchors:,} anchor points per image (cells per scale: {cells}); "
                  f"boxes: distances to the 4 sides, {settings.reg_max} DFL bins each; sigmoid scores")
            return 0
        maps = ", ".join(f"{h}x{w}x{n}" for (h, w), n in zip(spec["feature_maps"],
                                                              spec["anchors_per_pixel"]))
        print(f"anchors per image: {settings.num_anchors:,} "
              f"(scales h x w x anchors per pixel: {maps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
