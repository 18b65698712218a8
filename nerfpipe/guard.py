"""Ownership of output folders: stage markers, one writer per folder, containment checks.

Every stage writes only inside its own output folder. The folder carries a marker file
(`layout.STAGE_MARKER`, JSON `{"stage": ...}`) naming the stage that wrote it, and a stage
replaces or writes into an existing folder only when the folder is empty or carries its own
marker; anything else (a dataset, another stage's output, an unrelated folder) is refused
before a byte is written. While a stage writes, it holds an advisory `fcntl` lock on
`layout.LOCK_FILE` in that folder, so a second writer fails at once instead of mixing its
files with the first's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from nerfpipe.errors import NerfpipeError
from nerfpipe.layout import LOCK_FILE, STAGE_MARKER

BOOKKEEPING = (STAGE_MARKER, LOCK_FILE)


def marker_stage(folder: Path) -> str | None:
    """The stage named by `folder`'s marker, or None without a readable marker."""
    try:
        value = json.loads((Path(folder) / STAGE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return value.get("stage") if isinstance(value, dict) else None


def write_marker(folder: Path, stage: str) -> None:
    from nerfpipe import io as nio

    nio.write_json(Path(folder) / STAGE_MARKER, {"stage": stage})


def is_within(path: Path, root: Path) -> bool:
    """True if `path` is `root` or lies below it (both resolved, symlinks followed)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    return path == root or root in path.parents


def check_output_dir(out_dir: Path, stage: str, inputs: Iterable[Path] = (),
                     legacy_names: Iterable[str] = ()) -> None:
    """Refuse an output folder this stage may not write into or replace.

    Allowed: a missing folder, an empty one, one whose marker names `stage`, or (outputs of
    earlier versions) one whose entries are all in `legacy_names`. Refused: anything else, and
    a folder that contains one of `inputs` or lies inside one of them.
    """
    out_dir = Path(out_dir)
    for item in inputs:
        item = Path(item)
        if is_within(item, out_dir):
            raise NerfpipeError(f"{out_dir}: output folder of the {stage} stage contains its input {item}; "
                                "refusing to write there (choose another --out)")
        if item.is_dir() and is_within(out_dir, item):
            raise NerfpipeError(f"{out_dir}: output folder of the {stage} stage lies inside its input "
                                f"{item}; refusing to write there (choose another --out)")
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise NerfpipeError(f"{out_dir}: exists and is not a folder; refusing to replace it")
    if not out_dir.exists():
        return
    owner = marker_stage(out_dir)
    if owner == stage:
        return
    entries = {p.name for p in out_dir.iterdir()} - {LOCK_FILE}
    legacy = set(legacy_names)
    if not entries or (owner is None and legacy and entries <= legacy):
        return
    what = f"was written by the {owner} stage" if owner else "was not written by nerfpipe"
    raise NerfpipeError(f"{out_dir}: folder exists and {what} (no {stage} marker {STAGE_MARKER}); "
                        f"refusing to write the {stage} stage there (choose another --out or remove it)")


@contextlib.contextmanager
def writer_lock(out_dir: Path, stage: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on `out_dir` while the block runs.

    A second writer gets a NerfpipeError naming the folder and the holder's pid. The lock file
    stays (removing it would let a third writer lock a new inode while the second still waits).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise NerfpipeError(f"{out_dir}: another {stage} is writing this folder (pid {holder}); "
                                "wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def owned_output_dir(out_dir: Path, stage: str, inputs: Iterable[Path] = (),
                     legacy_names: Iterable[str] = ()) -> Iterator[Path]:
    """Check `out_dir` (check_output_dir), lock it, mark it as `stage`'s, and yield it."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, stage, inputs, legacy_names)
    with writer_lock(out_dir, stage):
        if marker_stage(out_dir) != stage:
            write_marker(out_dir, stage)
        yield out_dir
