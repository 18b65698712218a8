"""Build of the nerfpipe._ext extension; the package metadata lives in pyproject.toml.

The CPU kernels (ext/csrc/*.cpp) are always built. The CUDA kernels (ext/csrc/cuda/*.cu) are added when
torch was built with CUDA, a CUDA toolkit is found (CUDA_HOME, else the nvcc on PATH) and NERFPIPE_NO_CUDA
is unset. The CUDA sources sit in a folder of their own: setuptools names each object after its source
path, and ext/csrc/X.cpp next to ext/csrc/X.cu would both be built into the same X.o. See README.md,
"Building the CUDA extension", and ext/cuda_build.py for the toolkit, version and architecture checks.
"""

from __future__ import annotations

import os
import sys

import torch
from setuptools import setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ext"))
import cuda_build  # noqa: E402  (ext/cuda_build.py)

CSRC = os.path.join("ext", "csrc")


def _want_cuda() -> tuple[bool, str]:
    if os.environ.get("NERFPIPE_NO_CUDA"):
        return False, "NERFPIPE_NO_CUDA is set"
    if not torch.version.cuda:
        return False, f"torch {torch.__version__} was built without CUDA"
    cuda_home = cuda_build.find_cuda_home()
    if cuda_home is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    # torch.utils.cpp_extension reads CUDA_HOME once, when first imported.
    os.environ["CUDA_HOME"] = cuda_home
    nvcc = cuda_build.nvcc_version(cuda_home)
    if nvcc is None:
        sys.exit(f"nerfpipe._ext: {cuda_home}/bin/nvcc does not run; set CUDA_HOME to a CUDA toolkit, or "
                 "NERFPIPE_NO_CUDA=1 to build the CPU kernels only")
    mismatch = cuda_build.cuda_mismatch_message(torch.__version__, torch.version.cuda, nvcc, cuda_home)
    if mismatch:
        sys.exit(mismatch)
    arch, why = cuda_build.resolve_arch_list(
        os.environ.get("TORCH_CUDA_ARCH_LIST"), torch.cuda.device_count(),
        torch._C._cuda_getArchFlags().split(), cuda_build.nvcc_gpu_codes(cuda_home))
    if arch is not None:
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    return True, f"nvcc {nvcc[0]}.{nvcc[1]} at {cuda_home}, torch {torch.__version__}; {why}"


WITH_CUDA, REASON = _want_cuda()
from torch.utils import cpp_extension  # noqa: E402  (after CUDA_HOME is settled)
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, include_paths  # noqa: E402

if WITH_CUDA:
    cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]  # in case it was imported before CUDA_HOME was set


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


def _rel(path) -> str:
    """setuptools wants sources relative to the project root; each object is named after that path."""
    return str(path.relative_to(cuda_build.ROOT))


def _extension():
    sources = [_rel(p) for p in cuda_build.cpu_sources()]
    openmp = _openmp_flags()
    # No fused multiply-add contraction (the x86-64 code is the same without it; GCC contracts by default
    # where FMA is baseline, as on aarch64): the sampling kernels round as the CUDA ones (-fmad=false) do.
    cxx_flags = ["-O3", "-ffp-contract=off", *openmp]
    print(f"nerfpipe._ext: CUDA kernels {'on' if WITH_CUDA else 'off'} ({REASON})", file=sys.stderr)
    if not WITH_CUDA:
        return CppExtension("nerfpipe._ext", sources, include_dirs=[os.path.abspath(CSRC)],
                            extra_compile_args={"cxx": cxx_flags}, extra_link_args=openmp)
    sources += [_rel(p) for p in cuda_build.cuda_sources()]
    # -fmad=false: no a*b+c contraction into one FMA, so that the sampling kernels (stratified, sample_pdf),
    # made only of correctly rounded + - * /, give the CPU kernels' samples bit for bit.
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-fmad=false"]
    if _cuda_header_missing():
        nvcc_flags.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")
        cxx_flags.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")
    return CUDAExtension("nerfpipe._ext", sources, include_dirs=[os.path.abspath(CSRC)],
                         define_macros=[("WITH_CUDA", None)],
                         extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, extra_link_args=openmp)


setup(ext_modules=[_extension()], cmdclass={"build_ext": BuildExtension})
