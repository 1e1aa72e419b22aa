"""What a measurement was taken on: CPU model, the ISA features that decide int8 speed, core
and thread counts, and the runtime versions. Every benchmark JSON, `pipeline report` and
`serving benchmark` record it, because the machines differ: int8 TFLite ran at 1.78x/2.92x of
fp32 on an AVX-512 VNNI host and at 0.84x/0.76x on an AVX2-only one, with the same files.

No TensorFlow import: versions come from package metadata, CPU facts from /proc/cpuinfo
(Linux) or sysctl (macOS).
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

# x86 flags (as /proc/cpuinfo spells them) and ARM features that matter for int8/fp16 kernels
X86_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
ARM_FEATURES = ("asimd", "asimddp", "i8mm", "fphp", "asimdhp", "sve", "sve2", "bf16")
ARM_NAMES = {"asimd": "neon", "asimddp": "dotprod", "fphp": "fp16", "asimdhp": "fp16"}
RUNTIMES = ("ai-edge-litert", "onnxruntime", "tensorflow", "keras", "numpy")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpuinfo() -> tuple[str | None, set[str]]:
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and model is None:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def int8_dot_product(isa: list[str]) -> bool:
    """Whether the CPU has int8 dot-product instructions (where int8 kernels can beat fp32)."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8", "dotprod", "i8mm"} & set(isa))


@functools.cache
def machine_info() -> dict[str, Any]:
    """The JSON-ready description of this machine (cached: it does not change in a process)."""
    model, flags = _cpuinfo()
    if platform.system() == "Darwin":
        model = model or _sysctl("machdep.cpu.brand_string")
        if _sysctl("hw.optional.arm.FEAT_DotProd") == "1":
            flags.add("asimddp")
        if _sysctl("hw.optional.arm.FEAT_I8MM") == "1":
            flags.add("i8mm")
    isa = [f for f in X86_FEATURES if f in flags]
    isa += sorted({ARM_NAMES.get(f, f) for f in ARM_FEATURES if f in flags})
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:   # macOS
        usable = os.cpu_count()
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "isa": isa,
        "int8_dot_product": int8_dot_product(isa),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "runtimes": {d: v for d in RUNTIMES if (v := _version(d))},
    }


def describe(info: dict[str, Any] | None = None) -> str:
    """One line for tables and reports: 'Intel Xeon ..., x86_64, AVX2 AVX512_VNNI ..., 2 CPUs'."""
    info = info or machine_info()
    isa = " ".join(f.upper() for f in info.get("isa", []) if f not in ("sse4_2", "avx", "fma", "f16c")) or "-"
    return (f"{info.get('cpu')} ({info.get('arch')}; {isa}; {info.get('usable_cpus')} of "
            f"{info.get('logical_cpus')} CPUs usable)")


def measured_on() -> dict[str, Any]:
    """machine_info() plus the load averages now: what a benchmark JSON records (a shared
    machine's load explains a slow figure)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {**machine_info(), "load_avg": load}
