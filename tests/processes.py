"""Watching test subprocesses that pause themselves at a failpoint (NERFPIPE_PAUSE_AFTER_CHECKPOINT,
NERFPIPE_PAUSE_AT_ITERATION: the trainer sends itself SIGSTOP), through /proc. Waiting is for a
state, never for a length of time, so the tests behave the same on any machine; the timeout only
ends a test that would otherwise hang."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

STOPPED = ("T", "t")  # stopped by a signal, or by a tracer


def process_state(pid: int) -> str | None:
    """The one-letter state of `pid` (R, S, T, Z, ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_stopped(proc: subprocess.Popen | int, timeout_s: float = 600.0) -> bool:
    """Wait until the process stops itself (True), or exits (False)."""
    pid = proc if isinstance(proc, int) else proc.pid
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not isinstance(proc, int) and proc.poll() is not None:
            return False
        state = process_state(pid)
        if state is None or state == "Z":
            return False
        if state in STOPPED:
            return True
        time.sleep(0.02)
    return False


def stopped_in_group(pgid: int) -> list[int]:
    """Pids of the stopped processes of process group `pgid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] in STOPPED:
                pids.append(int(entry.name))
    return pids
