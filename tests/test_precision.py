"""What `amp` runs: float16 on CUDA, bfloat16 on CPUs with native bf16, float32 on other CPUs."""

from __future__ import annotations

import json

import pytest
import torch

from nerfpipe import precision
from nerfpipe.errors import NerfpipeError
from nerfpipe.stages.train import train

CPUINFO_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme sse sse2 avx f16c avx2 fma bmi2
bugs\t\t: sysret_ss_attrs
"""
CPUINFO_BF16 = CPUINFO_AVX2.replace("bmi2", "bmi2 avx512f avx512_bf16")
CPUINFO_AMX = CPUINFO_AVX2.replace("bmi2", "bmi2 amx_tile amx_bf16 amx_int8")

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_cpuinfo_parsing():
    assert not precision.cpuinfo_has_native_bf16(CPUINFO_AVX2)
    assert precision.cpuinfo_has_native_bf16(CPUINFO_BF16)
    assert precision.cpuinfo_has_native_bf16(CPUINFO_AMX)
    assert not precision.cpuinfo_has_native_bf16("")
    # Only the flags line counts, and whole flags only.
    assert not precision.cpuinfo_has_native_bf16("model name\t: avx512_bf16 board\nflags\t: avx2\n")
    assert not precision.cpuinfo_has_native_bf16("flags\t: avx512_bf16x avx2\n")


@pytest.mark.parametrize(("value", "native"), [("1", True), ("0", False)])
def test_env_override(monkeypatch, value, native):
    monkeypatch.setenv(precision.ENV_OVERRIDE, value)
    assert precision.cpu_has_native_bf16() is native
    assert precision.autocast_dtype(True, CPU) == (torch.bfloat16 if native else None)
    assert precision.precision_name(True, CPU) == ("bfloat16 autocast" if native else "float32")


def test_env_override_rejects_other_values(monkeypatch):
    monkeypatch.setenv(precision.ENV_OVERRIDE, "yes")
    with pytest.raises(NerfpipeError, match="NERFPIPE_CPU_BF16='yes': expected 1 or 0"):
        precision.cpu_has_native_bf16()


def test_detection_follows_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.delenv(precision.ENV_OVERRIDE, raising=False)
    for text, native in ((CPUINFO_AVX2, False), (CPUINFO_AMX, True)):
        fake = tmp_path / "cpuinfo"
        fake.write_text(text)
        monkeypatch.setattr(precision, "CPUINFO", fake)
        precision._detected_native_bf16.cache_clear()
        try:
            assert precision.cpu_has_native_bf16() is native
        finally:
            precision._detected_native_bf16.cache_clear()


def test_autocast_dtype_per_device(monkeypatch):
    monkeypatch.setenv(precision.ENV_OVERRIDE, "1")
    assert precision.autocast_dtype(False, CPU) is None
    assert precision.autocast_dtype(False, CUDA) is None
    assert precision.autocast_dtype(True, CUDA) == torch.float16
    assert precision.precision_name(True, CUDA) == "float16 autocast"
    assert precision.precision_name(False, CUDA) == "float32"


@pytest.mark.parametrize(("value", "expected"), [("0", "float32"), ("1", "bfloat16 autocast")])
def test_training_records_the_precision_that_ran(tiny_scene, tmp_path, monkeypatch, value, expected):
    from tests.test_train import tiny_settings

    monkeypatch.setenv(precision.ENV_OVERRIDE, value)
    seen: list[torch.dtype] = []
    real_autocast = torch.autocast

    class Spy(real_autocast):
        def __enter__(self):
            seen.append(self.fast_dtype if self._enabled else torch.float32)
            return super().__enter__()

    monkeypatch.setattr(torch, "autocast", Spy)
    out = tmp_path / "run"
    summary = train(tiny_scene["data"], tiny_scene["rays"], out, tiny_settings(iterations=2, amp=True),
                    threads=1)
    assert summary["precision"] == expected
    assert json.loads((out / "summary.json").read_text())["precision"] == expected
    assert seen and set(seen) == {torch.bfloat16 if value == "1" else torch.float32}
