"""The benchmarks run and end with their JSON line (their figures are not asserted: timing belongs to
benchmarks, not tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nerfpipe import ext_backend

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not ext_backend.extension_status()[0], reason="nerfpipe._ext is not built")
def test_sampling_bench_runs_and_reports_every_op():
    proc = subprocess.run([sys.executable, "bench/sampling.py", "--repeats", "1", "--threads", "1",
                           "--methods", "mipnerf360"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "sampling" and figures["ext_built"] is True
    for op in ("sample_pdf", "stratified", "ray_indices", "positional_encoding", "ipe_forward", "ipe_fwd_bwd",
               "step_mipnerf360"):
        assert figures[f"{op}_torch_ms"] > 0 and figures[f"{op}_ext_ms"] > 0, op
        assert figures[f"{op}_speedup"] == pytest.approx(figures[f"{op}_torch_ms"] / figures[f"{op}_ext_ms"],
                                                         rel=0.02)
