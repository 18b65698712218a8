"""The torch device a stage runs on: CUDA when this torch build can use it, else the CPU.

On one machine with several GPUs, Snakemake's `--resources gpu=N` bounds how many GPU jobs run at
once but does not say which GPU each gets. A job without an explicit device therefore claims a
free one: an advisory `fcntl` lock on `gpu{i}.lock` in $NERFPIPE_GPU_LOCK_DIR (default: the temp
folder), held until the process ends. Where the scheduler already narrowed the visible devices to
one (SLURM sets CUDA_VISIBLE_DEVICES), that one is used.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import torch

from nerfpipe.errors import NerfpipeError


def resolve_device(name: str | None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", or None for the default) as a usable torch.device.

    A name torch does not know, or a device this build or machine cannot use, is a NerfpipeError
    naming it, raised before any work starts.
    """
    if name is None or name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        count = torch.cuda.device_count()
        return torch.device("cuda", claim_free_gpu(count) if count > 1 else 0)
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


_claimed: list[int] = []  # lock file descriptors held for the life of the process


def claim_free_gpu(count: int) -> int:
    """Index of a CUDA device (of `count`) that no other nerfpipe process on this machine holds;
    when all are held, the devices are shared round-robin by process id."""
    lock_dir = Path(os.environ.get("NERFPIPE_GPU_LOCK_DIR") or tempfile.gettempdir()) / "nerfpipe-gpus"
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        fd = os.open(lock_dir / f"gpu{index}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _claimed.append(fd)
        return index
    return os.getpid() % count
