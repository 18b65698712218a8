"""The CUDA build of nerfpipe._ext: distinct objects for the CPU and CUDA sources of a topic, the build-time
decisions of setup.py (toolkit, CUDA major versions, GPU architectures), and the build of `make cuda-build`
(a venv of its own, .venv-cuda, with PyPI's CUDA torch; the extension built by CUDAExtension into
build/cuda/lib) imported in that venv with every CUDA op listed.

No GPU is needed. The CUDA build is not part of `make test` (its CUDA wheels are about 5 GB): where the
venv, its CUDA torch or a build of the current sources is absent, those tests are skipped with the reason.
Nothing is rebuilt here: the build's record (build/cuda/build.json) says which sources it was made from.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_VENV = Path(os.environ.get("NERFPIPE_CUDA_VENV", ROOT / ".venv-cuda"))
BUILD_DIR = Path(os.environ.get("NERFPIPE_CUDA_BUILD", ROOT / "build" / "cuda"))
VENV_PYTHON = CUDA_VENV / "bin" / "python"
# The module's tensor ops, each with CPU and CUDA kernels; the rest of its functions describe the build.
TENSOR_OPS = [
    "uniform_fill", "ray_indices_fill", "stratified_endpoints", "sample_pdf", "positional_encoding_forward",
    "positional_encoding_backward", "integrated_pos_enc_forward", "integrated_pos_enc_backward",
    "occ_march", "packed_weights_forward", "packed_weights_backward", "packed_composite_forward",
    "packed_composite_backward", "occ_grid_update",
]
INFO_FUNCTIONS = {"has_cuda", "has_openmp", "cuda_ops"}
# The __global__ kernels of ext/csrc/cuda/*.cu, found by name in the built library.
KERNELS = [
    "uniform_kernel", "ray_indices_kernel", "stratified_kernel", "cdf_kernel", "sample_kernel",
    "pe_forward_kernel", "pe_backward_kernel", "ipe_forward_kernel", "ipe_backward_kernel",
    "march_count_kernel", "march_fill_kernel", "weights_forward_kernel", "weights_backward_kernel",
    "composite_forward_kernel", "composite_backward_kernel", "grid_scatter_kernel", "grid_write_kernel",
]


def _load_cuda_build():
    spec = importlib.util.spec_from_file_location("nerfpipe_cuda_build", ROOT / "ext" / "cuda_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cuda_build = _load_cuda_build()


# ------------------------------------------------------------------------------------------------------
# Sources and build-time decisions (always run)


def test_cuda_and_cpu_objects_never_collide():
    """setuptools names each object after its source path less the suffix: X.cpp next to X.cu would both be
    compiled into X.o (ninja: 'multiple rules generate'; without ninja one object overwrites the other)."""
    cpu, cuda = cuda_build.cpu_sources(), cuda_build.cuda_sources()
    assert cuda, "no CUDA sources found in ext/csrc/cuda"
    objects = cuda_build.object_names(cpu + cuda)
    assert len(set(objects)) == len(objects), sorted(objects)
    assert not list(cuda_build.CSRC.glob("*.cu")), "CUDA sources belong in ext/csrc/cuda/"


def test_arch_list_defaults_to_torchs_architectures_without_gpu():
    torch_codes = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    nvcc_codes = ["sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_100", "sm_103", "sm_120",
                  "sm_121"]
    archs, why = cuda_build.resolve_arch_list(None, 0, torch_codes, nvcc_codes)
    assert archs == "7.5;8.0;8.6;9.0;10.0;12.0+PTX"
    assert "no GPU visible" in why
    # An architecture the local nvcc cannot compile for is left out (CUDA 13 dropped sm_50 .. sm_72).
    assert cuda_build.resolve_arch_list("", 0, ["sm_50", "sm_90"], nvcc_codes)[0] == "9.0+PTX"
    # Set: taken as it is; unset with a GPU visible: torch detects it.
    assert cuda_build.resolve_arch_list("9.0", 0, torch_codes, nvcc_codes)[0] == "9.0"
    assert cuda_build.resolve_arch_list(None, 2, torch_codes, nvcc_codes)[0] is None


def test_arch_list_unknown_is_a_clear_error():
    with pytest.raises(SystemExit, match="TORCH_CUDA_ARCH_LIST is unset, no GPU is visible"):
        cuda_build.resolve_arch_list(None, 0, ["sm_50"], ["sm_75", "sm_90"])
    with pytest.raises(SystemExit, match="set it, e.g. TORCH_CUDA_ARCH_LIST='9.0'"):
        cuda_build.resolve_arch_list(None, 0, [], [])


def test_cuda_major_mismatch_message():
    assert cuda_build.cuda_mismatch_message("2.13.0+cu130", "13.0", (13, 0), "/usr/local/cuda") is None
    assert cuda_build.cuda_mismatch_message("2.13.0+cu130", "13.0", (13, 2), "/usr/local/cuda") is None
    msg = cuda_build.cuda_mismatch_message("2.13.0+cu128", "12.8", (13, 0), "/usr/local/cuda-13.0")
    assert "torch 2.13.0+cu128 was built with CUDA 12.8" in msg
    assert "/usr/local/cuda-13.0 is nvcc 13.0" in msg
    assert "NERFPIPE_NO_CUDA=1" in msg and "CUDA_HOME" in msg


def test_nvcc_version_parsing():
    text = "Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler.36424714_0\n"
    assert cuda_build.parse_nvcc_version(text) == (13, 0)
    assert cuda_build.parse_nvcc_version("no version here") is None


def test_cuda_home_from_environment_first():
    assert cuda_build.find_cuda_home({"CUDA_HOME": "/opt/cuda-x", "PATH": ""}) == "/opt/cuda-x"
    assert cuda_build.find_cuda_home({"CUDA_PATH": "/opt/cuda-y", "PATH": ""}) == "/opt/cuda-y"


def test_cuda_home_behind_a_wrapper_script(tmp_path):
    """An nvcc on PATH that is a wrapper script (bin/ has no include/ beside it): the toolkit root is the one
    nvcc itself reports."""
    toolkit = tmp_path / "cuda-13.0"
    (toolkit / "include").mkdir(parents=True)
    (toolkit / "include" / "cuda_runtime.h").write_text("")
    (tmp_path / "bin").mkdir()
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho '#$ TOP={toolkit}/bin/..' >&2\n")
    nvcc.chmod(0o755)
    assert cuda_build.find_cuda_home({"PATH": str(tmp_path / "bin")}) == str(toolkit)


def test_sources_hash_follows_the_sources(tmp_path):
    (tmp_path / "ext" / "csrc" / "cuda").mkdir(parents=True)
    (tmp_path / "setup.py").write_text("setup")
    (tmp_path / "ext" / "cuda_build.py").write_text("helpers")
    kernel = tmp_path / "ext" / "csrc" / "cuda" / "k.cu"
    kernel.write_text("a")
    first = cuda_build.sources_hash(tmp_path)
    assert cuda_build.sources_hash(tmp_path) == first
    kernel.write_text("b")
    assert cuda_build.sources_hash(tmp_path) != first


def test_this_build_lists_its_cuda_ops():
    """The extension of this interpreter: cuda_ops() is every tensor op in a CUDA build, [] in a CPU one."""
    from nerfpipe import ext_backend

    built, reason = ext_backend.extension_status()
    if not built:
        pytest.skip(f"nerfpipe._ext is not built: {reason}")
    from nerfpipe import _ext

    assert sorted(_ext.cuda_ops()) == (sorted(TENSOR_OPS) if _ext.has_cuda() else [])
    bound = {n for n in dir(_ext) if not n.startswith("_") and callable(getattr(_ext, n))}
    assert bound - INFO_FUNCTIONS == set(TENSOR_OPS)


# ------------------------------------------------------------------------------------------------------
# The CUDA build of `make cuda-build` (skipped where it is absent)


@pytest.fixture(scope="module")
def record() -> dict:
    """build/cuda/build.json of a build of the current sources, made with a CUDA torch in .venv-cuda."""
    if not VENV_PYTHON.exists():
        pytest.skip(f"no CUDA venv at {CUDA_VENV}: `make cuda-build` sets it up and builds (about 5 GB of "
                    "CUDA wheels, not part of `make test`)")
    probe = subprocess.run(
        [str(VENV_PYTHON), "-c", "import torch; print(torch.__version__, torch.version.cuda)"],
        capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        pytest.skip(f"torch does not import in {CUDA_VENV}: {probe.stderr.strip()[-300:]}")
    version, cuda = probe.stdout.split()
    if cuda == "None":
        pytest.skip(f"torch {version} in {CUDA_VENV} is a CPU-only build")
    path = BUILD_DIR / cuda_build.RECORD
    if not path.exists():
        pytest.skip(f"no CUDA build in {BUILD_DIR} (torch {version}, CUDA {cuda}, is set up): "
                    "run `make cuda-build`")
    rec = json.loads(path.read_text())
    if rec.get("sources_hash") != cuda_build.sources_hash():
        pytest.skip(f"the CUDA build in {BUILD_DIR} was made from other sources: run `make cuda-build` again")
    rec["_venv_torch"] = version
    return rec


def _extension_path(rec: dict) -> Path:
    path = Path(rec["extension"])
    return path if path.is_absolute() else ROOT / path


def test_cuda_build_imports_with_every_cuda_op(record):
    """Imported by the CUDA venv's python (so every symbol resolves: a launcher missing from the link is an
    ImportError), the module has CUDA kernels for every tensor op it binds."""
    script = (
        "import importlib.util, json, sys, torch\n"
        "spec = importlib.util.spec_from_file_location('nerfpipe._ext', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "bound = sorted(n for n in dir(m) if not n.startswith('_') and callable(getattr(m, n)))\n"
        "print(json.dumps({'has_cuda': m.has_cuda(), 'cuda_ops': list(m.cuda_ops()), 'bound': bound,\n"
        "                  'torch_cuda': torch.version.cuda}))\n"
    )
    proc = subprocess.run([str(VENV_PYTHON), "-c", script, str(_extension_path(record))], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["has_cuda"] is True
    assert set(got["bound"]) - INFO_FUNCTIONS == set(TENSOR_OPS)
    assert sorted(got["cuda_ops"]) == sorted(TENSOR_OPS)
    assert got["cuda_ops"] == record["cuda_ops"]
    assert got["torch_cuda"] == record["torch_cuda"]


def test_cuda_build_carries_the_device_code(record):
    """The library embeds a fatbinary with every __global__ kernel, for the architectures it was built for."""
    data = _extension_path(record).read_bytes()
    assert b".nv_fatbin" in data
    missing = [k for k in KERNELS if k.encode() not in data]
    assert not missing, f"kernels missing from {record['extension']}: {missing}"
    assert record["gpu_code"], "the build compiled no device code"
    assert all(code.startswith(("sm_", "compute_")) for code in record["gpu_code"])


def test_cuda_build_versions_match(record):
    assert record["torch"] == record["_venv_torch"]
    assert record["torch_cuda"] and record["nvcc"]
    assert record["torch_cuda"].split(".")[0] == record["nvcc"].split(".")[0]
