"""Build-time helpers for the CUDA kernels of nerfpipe._ext, used by setup.py and the tests.

Functions without torch at import time, so that the tests exercise the decisions without a CUDA toolkit:
where the toolkit is, which nvcc version it has, whether it matches torch's CUDA, which GPU architectures
to compile for when TORCH_CUDA_ARCH_LIST is unset, and a hash of the sources a build was made from.

    python ext/cuda_build.py sources-hash                  # hash of ext/csrc, setup.py and this file
    python ext/cuda_build.py record build/cuda [HASH]      # import the build, write build/cuda/build.json
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "ext" / "csrc"
CUDA_DIR = CSRC / "cuda"


def cpu_sources(csrc: Path = CSRC) -> list[Path]:
    """The CPU kernels and the bindings: ext/csrc/*.cpp."""
    return sorted(csrc.glob("*.cpp"))


def cuda_sources(csrc: Path = CSRC) -> list[Path]:
    """The CUDA kernels, ext/csrc/cuda/<topic>.cu. They live in a folder of their own so that their objects
    (build/.../cuda/<topic>.o) never share a path with the CPU objects of the same topic (<topic>.o)."""
    return sorted((csrc / "cuda").glob("*.cu"))


def object_names(sources: list[Path], root: Path = ROOT) -> list[str]:
    """The object path setuptools gives each source (its path relative to the root, suffix .o)."""
    return [str(p.resolve().relative_to(root.resolve()).with_suffix(".o")) for p in sources]


def sources_hash(root: Path = ROOT) -> str:
    """sha256 over the extension's sources and build scripts, path and content: a build recorded with one
    hash was made from exactly these files."""
    files = sorted([*(root / "ext" / "csrc").rglob("*"), root / "setup.py", root / "ext" / "cuda_build.py"])
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------------
# The CUDA toolkit


def _has_headers(home: str | None) -> bool:
    return bool(home) and os.path.exists(os.path.join(home, "include", "cuda_runtime.h"))


def nvcc_top(nvcc: str) -> str | None:
    """The toolkit root that an nvcc (or a wrapper script that execs one) really uses, from its dry run."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-E", "-x", "cu", os.devnull], capture_output=True, text=True,
                             timeout=60).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^#\$ TOP=(.+)$", out, re.MULTILINE)
    return os.path.normpath(m.group(1).strip()) if m else None


def find_cuda_home(env: dict[str, str] | None = None) -> str | None:
    """CUDA_HOME or CUDA_PATH when set; else the toolkit of the nvcc on PATH; else /usr/local/cuda.

    torch's own guess takes the folder above `which nvcc`, which is wrong when nvcc is a wrapper script in
    /usr/local/bin (then it would look for the headers in /usr/local/include): the toolkit root is taken
    from nvcc itself in that case.
    """
    env = os.environ if env is None else env
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            return env[var]
    nvcc = shutil.which("nvcc", path=env.get("PATH"))
    if nvcc is not None:
        guess = os.path.dirname(os.path.dirname(nvcc))
        if _has_headers(guess):
            return guess
        top = nvcc_top(nvcc)
        if _has_headers(top):
            return top
    return "/usr/local/cuda" if _has_headers("/usr/local/cuda") else None


def nvcc_version(cuda_home: str) -> tuple[int, int] | None:
    """(major, minor) of <cuda_home>/bin/nvcc, or None when it does not run."""
    try:
        out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvcc_version(out)


def parse_nvcc_version(text: str) -> tuple[int, int] | None:
    m = re.search(r"release (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def nvcc_gpu_codes(cuda_home: str) -> list[str]:
    """The real architectures this nvcc can compile for (sm_75, sm_80, ...), [] when it does not say."""
    try:
        out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--list-gpu-code"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return re.findall(r"\bsm_\d+[a-z]?\b", out)


def cuda_mismatch_message(torch_version: str, torch_cuda: str, nvcc: tuple[int, int],
                          cuda_home: str) -> str | None:
    """The error to stop the build with when torch's CUDA major differs from nvcc's, else None.

    Objects built by one CUDA major do not link against the runtime of another, and torch refuses the
    mismatch itself, late and tersely; this says what to do.
    """
    torch_major = int(torch_cuda.split(".")[0])
    if torch_major == nvcc[0]:
        return None
    return (
        f"nerfpipe._ext: torch {torch_version} was built with CUDA {torch_cuda}, but the CUDA toolkit at "
        f"{cuda_home} is nvcc {nvcc[0]}.{nvcc[1]}: the CUDA major versions must match ({torch_major} != "
        f"{nvcc[0]}). Either install a torch built for CUDA {nvcc[0]}, or point CUDA_HOME at a CUDA "
        f"{torch_major}.x toolkit, or set NERFPIPE_NO_CUDA=1 to build the CPU kernels only."
    )


def arch_list_from_codes(torch_codes: list[str], nvcc_codes: list[str]) -> str:
    """TORCH_CUDA_ARCH_LIST for the real architectures that torch was built for and nvcc supports, the
    newest also as PTX (so that a GPU newer than all of them still runs, JIT-compiled). '' when none."""
    usable = [c for c in torch_codes if c.startswith("sm_") and (not nvcc_codes or c in nvcc_codes)]
    versions = sorted({(int(c[3:-1]) if c[-1].isalpha() else int(c[3:])) for c in usable})
    if not versions:
        return ""
    archs = [f"{v // 10}.{v % 10}" for v in versions]
    archs[-1] += "+PTX"
    return ";".join(archs)


def resolve_arch_list(env_value: str | None, visible_gpus: int, torch_codes: list[str],
                      nvcc_codes: list[str]) -> tuple[str | None, str]:
    """(the TORCH_CUDA_ARCH_LIST to build with, or None to leave it to torch; a line saying why).

    Set: used as it is. Unset with a GPU visible: torch compiles for the visible GPUs. Unset without one
    (a login node, a CI machine, a container without a driver): torch's own detection would fail on an
    empty list, so the default is every architecture the installed torch was built for that nvcc supports.
    Raises SystemExit when there is none.
    """
    if env_value:
        return env_value, f"TORCH_CUDA_ARCH_LIST={env_value} (from the environment)"
    if visible_gpus > 0:
        return None, "TORCH_CUDA_ARCH_LIST unset: compiling for the visible GPUs (torch's detection)"
    archs = arch_list_from_codes(torch_codes, nvcc_codes)
    if not archs:
        raise SystemExit(
            "nerfpipe._ext: TORCH_CUDA_ARCH_LIST is unset, no GPU is visible and the architectures of the "
            f"installed torch ({' '.join(torch_codes) or 'none reported'}) are not known to nvcc "
            f"({' '.join(nvcc_codes) or 'none reported'}); set it, e.g. TORCH_CUDA_ARCH_LIST='9.0' for an "
            "H100/H200, or NERFPIPE_NO_CUDA=1 for the CPU kernels only."
        )
    return archs, (f"TORCH_CUDA_ARCH_LIST unset and no GPU visible: building for torch's architectures "
                   f"{archs} (set TORCH_CUDA_ARCH_LIST, e.g. '9.0', to build for fewer)")


# --------------------------------------------------------------------------------------------------------
# The record of a build (`make cuda-build`), read by tests/test_cuda_build.py

RECORD = "build.json"
EXT_GLOB = "lib/nerfpipe/_ext*.so"


def gpu_codes_of_build(build_dir: Path) -> list[str]:
    """The device code the build compiled (sm_XX cubins, compute_XX PTX), from its ninja file's -gencode."""
    ninja = build_dir / "temp" / "build.ninja"
    text = ninja.read_text() if ninja.exists() else ""
    codes = set(re.findall(r"-gencode=arch=compute_\w+,code=(\w+)", text))
    return sorted(codes, key=lambda c: (c.startswith("compute"), int(re.sub(r"\D", "", c))))


def record_build(build_dir: Path, hash_before: str | None = None) -> dict:
    """Imports the extension built into build_dir/lib (with the torch of this interpreter) and writes
    build_dir/build.json: versions, device code, the sources hash and the module's CUDA ops. hash_before,
    the sources hash taken before the build started, must still hold (no source changed during the build)."""
    import importlib.util
    import json

    import torch

    current = sources_hash()
    if hash_before is not None and hash_before != current:
        raise SystemExit("the extension's sources changed during the build: run it again")
    sos = sorted(build_dir.glob(EXT_GLOB))
    if len(sos) != 1:
        raise SystemExit(f"expected one built extension {build_dir / EXT_GLOB}, found {len(sos)}")
    spec = importlib.util.spec_from_file_location("nerfpipe._ext", sos[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cuda_home = find_cuda_home()
    nvcc = nvcc_version(cuda_home) if cuda_home else None
    record = {
        "extension": str(sos[0].resolve().relative_to(ROOT)) if sos[0].resolve().is_relative_to(ROOT)
        else str(sos[0].resolve()),
        "python": sys.executable,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "nvcc": f"{nvcc[0]}.{nvcc[1]}" if nvcc else None,
        "cuda_home": cuda_home,
        "torch_cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST"),
        "gpu_code": gpu_codes_of_build(build_dir),
        "has_cuda": bool(module.has_cuda()),
        "cuda_ops": list(module.cuda_ops()),
        "sources_hash": current,
    }
    (build_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    if sys.argv[1:] == ["sources-hash"]:
        print(sources_hash())
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "record":
        rec = record_build(Path(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None)
        print(f"nerfpipe._ext CUDA build: torch {rec['torch']} (CUDA {rec['torch_cuda']}), "
              f"nvcc {rec['nvcc']}, device code: {' '.join(rec['gpu_code'])}")
        print(f"CUDA ops ({len(rec['cuda_ops'])}): {' '.join(rec['cuda_ops'])}")
        if not rec["has_cuda"] or not rec["cuda_ops"]:
            raise SystemExit("the extension has no CUDA kernels")
    else:
        raise SystemExit("usage: python ext/cuda_build.py sources-hash | record BUILD_DIR [HASH_BEFORE]")
