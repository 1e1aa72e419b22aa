"""Compression of a trained run with tensorflow-model-optimization: magnitude pruning, QAT, and
pruning followed by pruning-preserving QAT; the result is a normal run dir that export, serving
and report take like any other.

    from pipeline.config import load_config
    from pipeline.compress import CompressConfig, compress
    result = compress(load_config(CompressConfig, ["from=runs/r1", "method=prune", "epochs=4"]))
    result.metrics["compress"]["sparsity"]["overall"], result.model

CLI: `python -m pipeline compress from=runs/r1 method=qat`. The options are config.py; the
parent side (no TensorFlow) is core.py; the fine-tune runs in worker.py's process, the only one
that imports tfmot (tfmot_ops.py); sparsity.py counts zeros in models and exported files.
"""
from __future__ import annotations

from pipeline.compress.config import METHODS, CompressConfig, PruneConfig, QATConfig
from pipeline.compress.core import CompressError, CompressResult, compress

__all__ = ["METHODS", "CompressConfig", "CompressError", "CompressResult", "PruneConfig",
           "QATConfig", "compress"]
