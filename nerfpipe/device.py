"""The torch device a stage runs on: CUDA when this torch build can use it, else the CPU."""

from __future__ import annotations

import torch

from nerfpipe.errors import NerfpipeError


def resolve_device(name: str | None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", or None for the default) as a usable torch.device.

    A name torch does not know, or a device this build or machine cannot use, is a NerfpipeError
    naming it, raised before any work starts.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise NerfpipeError(f"--device: {name!r} is not a device name (use cpu, cuda or cuda:N)") from exc
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise NerfpipeError(f"--device: {name!r}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise NerfpipeError(f"--device: {name!r} cannot be used: {why}")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise NerfpipeError(f"--device: {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return dev
