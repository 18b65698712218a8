"""The compiled extension `nerfpipe._ext` and the choice of backend for the ops that wrap it.

Every op of `nerfpipe.random_keys`, `nerfpipe.sampling` and `nerfpipe.encoding_ext` has a pure-torch
reference (`*_torch`) and a wrapper of the extension (`*_ext`); its public function dispatches through
`use_ext` on the active backend (`set_backend` / `get_backend`): 'ext' when the extension is built,
'torch' otherwise, unless forced. This module holds that one piece of state and the extension handle.
"""

from __future__ import annotations

import torch

from nerfpipe.errors import NerfpipeError

try:
    from nerfpipe import _ext

    _EXT_ERROR = ""
except Exception as exc:  # ImportError, or OSError for an extension built against another torch
    _ext = None
    _EXT_ERROR = f"{type(exc).__name__}: {exc}"

BACKENDS = ("auto", "ext", "torch")

_requested = "auto"
_backend: str | None = None


def extension_status() -> tuple[bool, str]:
    """(True, "") when `nerfpipe._ext` is importable, else (False, the reason)."""
    return (_ext is not None, _EXT_ERROR)


def extension_openmp() -> bool:
    """True when the extension's CPU kernels were compiled with OpenMP, i.e. use all torch threads."""
    return _ext is not None and bool(_ext.has_openmp())


def set_backend(name: str) -> str:
    """Select 'auto' (the extension when built, else torch), 'ext' or 'torch'; returns the resolved name.

    In 'auto' mode CUDA tensors fall back to the torch reference when the extension was built
    without CUDA kernels; with 'ext' forced they raise instead.
    """
    global _requested, _backend
    if name not in BACKENDS:
        raise NerfpipeError(f"sampling backend: unknown backend {name!r}; "
                            f"choose one of {', '.join(BACKENDS)}")
    if name == "ext" and _ext is None:
        raise NerfpipeError(f"sampling backend 'ext': the extension nerfpipe._ext is not built "
                            f"({_EXT_ERROR}); build it with `pip install --no-build-isolation -e .` "
                            "or use 'torch'")
    _requested = name
    _backend = ("ext" if _ext is not None else "torch") if name == "auto" else name
    return _backend


def get_backend() -> str:
    """The active resolved backend, 'ext' or 'torch'."""
    if _backend is None:
        return set_backend(_requested)
    return _backend


def use_ext(device: torch.device) -> bool:
    """Whether a public op on tensors of `device` runs the extension (True) or the torch reference."""
    if get_backend() != "ext":
        return False
    if device.type == "cuda" and _requested == "auto" and not _ext.has_cuda():
        return False
    return True


def require_ext():
    """The extension module `nerfpipe._ext`; NerfpipeError naming the reason when it is not built."""
    if _ext is None:
        raise NerfpipeError(f"the extension nerfpipe._ext is not built ({_EXT_ERROR})")
    return _ext
