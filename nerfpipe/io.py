"""Atomic artifact writing and safe loading.

Every artifact goes to a temporary file in the destination folder, is flushed and
fsynced, then renamed over the destination, so an interrupted run never leaves a
truncated file that a later stage would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nerfpipe.errors import NerfpipeError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    On an exception the temporary file is removed and `path` is left untouched. An OSError
    (disk full, permission denied, ...) becomes a NerfpipeError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    os.close(fd)
    # mkstemp creates 0600 files; artifacts get the usual permissions (shared results on a cluster).
    os.chmod(tmp, 0o666 & ~_UMASK)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise write_error(path, exc) from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_error(path: Path, exc: OSError) -> NerfpipeError:
    """One-line error for a failed write; the earlier artifact at `path` is still in place."""
    return NerfpipeError(f"{path}: cannot write ({exc.strerror or exc}); nothing was replaced")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_temp_dir(out_dir: Path) -> Path:
    """A fresh temporary sibling of `out_dir` (same file system, so it can be renamed onto it).

    mkdtemp creates it private (0700); it gets the usual umask-derived mode since it becomes
    the artifact folder itself.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        os.chmod(tmp, 0o777 & ~_UMASK)
    except OSError as exc:
        raise write_error(out_dir, exc) from exc
    return tmp


def replace_dir(tmp_dir: Path, out_dir: Path) -> None:
    """Move a finished temporary directory onto `out_dir`, replacing an older one.

    The old directory is first renamed aside and removed only after the new one is in place.
    """
    out_dir = Path(out_dir)
    old = None
    try:
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        os.replace(tmp_dir, out_dir)
    except OSError as exc:
        if old is not None and (old / out_dir.name).exists() and not out_dir.exists():
            os.replace(old / out_dir.name, out_dir)  # put the previous output back
        raise write_error(out_dir, exc) from exc
    _fsync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict], empty_header: tuple[str, ...] = ()) -> None:
    """Rows of dicts as CSV; columns in order of first appearance, None as an empty cell."""
    import csv

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns or list(empty_header))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> str:
    """Write `array` as .npy; returns the SHA-256 hex digest of the file's bytes."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    data = buf.getvalue()
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def fingerprint(parts: dict[str, Any]) -> str:
    """SHA-256 hex digest of a JSON-serialisable dict (keys sorted): a content identity."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an image in [0, 1] (float) or uint8 as PNG. image: [H, W] or [H, W, C]."""
    import imageio.v3 as iio

    if image.dtype != np.uint8:
        image = (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    write_bytes(path, iio.imwrite("<bytes>", image, extension=".png"))


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike) -> Any:
    """Load a checkpoint without unpickling arbitrary objects (weights_only=True)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise NerfpipeError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        text = str(exc)
        if "Weights only load failed" in text or "weights_only" in text:
            # torch's message suggests weights_only=False; for a file we did not write, never do that.
            raise NerfpipeError(f"{path}: not a nerfpipe checkpoint: it holds pickled objects other than "
                                "tensors and plain data, which are never unpickled") from exc
        first = next((line.strip() for line in text.splitlines() if line.strip()), "no message")
        raise NerfpipeError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {first})") from exc


def parse_json(text: str, source: str) -> Any:
    """json.loads with a one-line NerfpipeError naming `source` (a flag or file) on bad input."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limits, deep nesting
        raise NerfpipeError(f"{source}: not valid JSON ({' '.join(str(exc).split())[:200]})") from exc


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise NerfpipeError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int limits
        raise NerfpipeError(f"{path}: not valid JSON ({exc})") from exc
