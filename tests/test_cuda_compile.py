"""Every CUDA source of the extension (ext/csrc/cuda/*.cu) compiles with nvcc against the installed torch
headers.

No GPU is needed: `nvcc -c` only. All files compile in parallel, once per test session. The full CUDA build
(CUDAExtension, linked against a CUDA torch) is tests/test_cuda_build.py's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

CSRC = Path(__file__).resolve().parents[1] / "ext" / "csrc"
# In a folder of their own: next to X.cpp, X.cu would be compiled into the same object X.o.
CU_FILES = sorted((CSRC / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if Path(p).exists()), None)
COMPILE_TIMEOUT_S = 900


def nvcc_command(source: Path, obj: Path) -> list[str]:
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [*cpp_extension.include_paths(), sysconfig.get_paths()["include"], str(CSRC)]
    return [
        NVCC, "-c", str(source), "-o", str(obj),
        "-std=c++20", "--expt-relaxed-constexpr", "-fmad=false", "-Xcompiler", "-fPIC",
        "-DWITH_CUDA", "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *(f"-I{p}" for p in includes),
    ]


@pytest.fixture(scope="session")
def compiled(tmp_path_factory) -> dict[str, tuple[int, str]]:
    """{file name: (nvcc return code, output)} for every .cu, compiled in parallel."""
    if NVCC is None:
        print("nvcc not found: skipping the CUDA compile check", file=sys.stderr)
        pytest.skip("nvcc not found on PATH or in /usr/local/cuda/bin")
    out_dir = tmp_path_factory.mktemp("cuda_objects")
    procs = {
        src.name: subprocess.Popen(nvcc_command(src, out_dir / f"{src.stem}.o"), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        for src in CU_FILES
    }
    results = {}
    for name, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            output = f"timed out after {COMPILE_TIMEOUT_S} s\n{output}"
        results[name] = (proc.returncode, output)
        if proc.returncode == 0:
            assert (out_dir / f"{Path(name).stem}.o").stat().st_size > 0
    return results


def test_every_topic_has_cuda_source():
    cpp_topics = {p.stem for p in CSRC.glob("*.cpp")} - {"bindings"}
    assert cpp_topics and cpp_topics == {p.stem for p in CU_FILES}
    assert not list(CSRC.glob("*.cu")), "CUDA sources belong in ext/csrc/cuda/"


@pytest.mark.parametrize("name", [p.name for p in CU_FILES])
def test_cuda_source_compiles(compiled, name):
    code, output = compiled[name]
    assert code == 0, f"nvcc failed on {name}:\n{output[-6000:]}"
