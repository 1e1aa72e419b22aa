"""python -m models list | summary NAME [input_shape=H,W,C] [num_classes=N] [option=value ...]"""
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
                                   "num_classes=10 width=0.5")
    p.add_argument("name")
    p.add_argument("options", nargs="*", metavar="key=value",
                   help="input_shape=H,W,C (default 224,224,3), num_classes=N (default 1000), "
                        "or any family option (width, dropout, ...)")
    args = parser.parse_args(argv)

    from models.factory import create_model, list_models

    if args.command == "list":
        print("\n".join(list_models()))
        return 0
    from models.summary import summary_text
    try:
        opts = parse_kv(args.options)
        shape = opts.pop("input_shape", (224, 224, 3))
        classes = opts.pop("num_classes", 1000)
        model = create_model(args.name, num_classes=classes, input_shape=shape, **opts)
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_text(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
