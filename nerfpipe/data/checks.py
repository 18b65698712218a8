"""Helpers of the data modules' input checks: quoting values and byte counts in one-line error
messages, memory limits with an environment override, and file tests that never raise."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from nerfpipe.errors import NerfpipeError


def format_bytes(n: int | float) -> str:
    """A byte count for messages: "12.3 GiB", "4.0 MiB", "512 bytes"."""
    if n >= 2**1000:  # beyond float range: give the order of magnitude
        return f"2^{int(n).bit_length() - 1} bytes"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 2**60 else f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def byte_limit(env: str, default: int) -> int:
    """A memory limit in bytes: the environment variable `env` when set, else `default`."""
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise NerfpipeError(f"environment variable {env}={raw!r}: expected a positive number of bytes")
    return int(value)


def short_repr(value: Any, limit: int = 200) -> str:
    """repr() of at most `limit` characters (the middle elided), for values quoted in one-line messages."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    head = (limit - 3) // 2
    return text[:head] + "..." + text[len(text) - (limit - 3 - head):]


def os_reason(exc: OSError) -> str:
    """The reason of an OSError for a message: its strerror, else its text, else its type name."""
    return exc.strerror or str(exc) or type(exc).__name__


def is_file(path: Path) -> bool:
    """Path.is_file that answers False (rather than raising) for names the OS refuses (too long, ...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
