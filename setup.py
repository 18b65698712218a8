"""Build of the nerfpipe._ext extension; the package metadata lives in pyproject.toml.

The CPU kernels (ext/csrc/*.cpp) are always built. The CUDA kernels (ext/csrc/*.cu) are added when
torch was built with CUDA, a CUDA toolkit is found (CUDA_HOME) and NERFPIPE_NO_CUDA is unset.
"""

from __future__ import annotations

import glob
import os
import sys

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension, include_paths

CSRC = os.path.join("ext", "csrc")


def _want_cuda() -> tuple[bool, str]:
    if os.environ.get("NERFPIPE_NO_CUDA"):
        return False, "NERFPIPE_NO_CUDA is set"
    if not torch.version.cuda:
        return False, f"torch {torch.__version__} was built without CUDA"
    if CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    return True, f"CUDA toolkit at {CUDA_HOME}"


def _cuda_header_missing() -> bool:
    """CPU-only torch wheels ship c10/cuda without its generated cmake header."""
    return not any(
        os.path.exists(os.path.join(p, "c10", "cuda", "impl", "cuda_cmake_macros.h")) for p in include_paths()
    )


def _openmp_flags() -> list[str]:
    """The CPU kernels split work with at::parallel_for, whose OpenMP backend is inlined into the extension:
    without -fopenmp its `#pragma omp parallel` is ignored and every kernel runs on one thread. torch's own
    libgomp (same soname) is the one the extension binds to at load time."""
    if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
        return ["-fopenmp"]
    return []


def _extension():
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")))
    openmp = _openmp_flags()
    cxx_flags = ["-O3", *openmp]
    with_cuda, reason = _want_cuda()
    print(f"nerfpipe._ext: CUDA kernels {'on' if with_cuda else 'off'} ({reason})", file=sys.stderr)
    if not with_cuda:
        return CppExtension("nerfpipe._ext", sources, include_dirs=[os.path.abspath(CSRC)],
                            extra_compile_args={"cxx": cxx_flags}, extra_link_args=openmp)
    sources += sorted(glob.glob(os.path.join(CSRC, "*.cu")))
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr"]
    if _cuda_header_missing():
        nvcc_flags.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")
        cxx_flags.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")
    return CUDAExtension("nerfpipe._ext", sources, include_dirs=[os.path.abspath(CSRC)],
                         define_macros=[("WITH_CUDA", None)],
                         extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, extra_link_args=openmp)


setup(ext_modules=[_extension()], cmdclass={"build_ext": BuildExtension})
