"""Which mixed precision `amp: true` runs on a device.

CUDA: float16 autocast (training adds a GradScaler). CPU: bfloat16 autocast only where the CPU computes
bfloat16 natively (avx512_bf16 or AMX). Elsewhere torch emulates bf16 matmuls, which was measured 8x
slower than float32 (AMD EPYC, AVX2: a default training step took ~1000 ms against ~125 ms), so `amp`
falls back to float32 there. `NERFPIPE_CPU_BF16=1` or `=0` overrides the detection.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import torch

from nerfpipe.errors import NerfpipeError

CPUINFO = Path("/proc/cpuinfo")
ENV_OVERRIDE = "NERFPIPE_CPU_BF16"
# x86 feature flags of native bfloat16 arithmetic (dot products / tile matmuls).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpuinfo_has_native_bf16(cpuinfo: str) -> bool:
    """True when a `flags` line of /proc/cpuinfo text lists avx512_bf16 or amx_bf16."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags" and NATIVE_BF16_FLAGS & set(value.split()):
            return True
    return False


@functools.cache
def _detected_native_bf16() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return cpuinfo_has_native_bf16(CPUINFO.read_text())
    except OSError:
        return False


def cpu_has_native_bf16() -> bool:
    """Native bfloat16 on this CPU: the NERFPIPE_CPU_BF16 override (1/0) if set, else detected."""
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override in ("1", "0"):
        return override == "1"
    if override:
        raise NerfpipeError(f"{ENV_OVERRIDE}={override!r}: expected 1 or 0")
    return _detected_native_bf16()


def autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype that `amp` means on `device`, or None for plain float32."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def precision_name(amp: bool, device: torch.device) -> str:
    """A label for records: 'float32', 'bfloat16 autocast' or 'float16 autocast'."""
    dtype = autocast_dtype(amp, device)
    return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
