"""An interrupted workflow resumes to the same results as an uninterrupted one.

`snakemake --cores 2` on config/smoke.yaml cut down to one scene and two variants is
interrupted while training runs: first with SIGINT to its process group (Ctrl-C), then, on the
rerun, with SIGKILL of the whole group (a killed terminal or a pre-empted node). The final
rerun (with --rerun-incomplete, as the local profile does) must complete, and its report.csv
must equal that of an uninterrupted run of the same config in another directory, metric for
metric; only the timing columns may differ.

The interruptions land at a known point on any machine, however fast: the trainers run with
NERFPIPE_PAUSE_AFTER_CHECKPOINT=N, so each stops itself (SIGSTOP) right after writing the
checkpoint of iteration N; the test waits for a stopped trainer, signals the process group and
then continues it (SIGCONT) so the signal is delivered. No sleep or timing decides the outcome.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from processes import stopped_in_group

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "config" / "smoke.yaml"
PROFILE = REPO / "workflow" / "profiles" / "local"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = shutil.which("snakemake", path=str(VENV_BIN)) or shutil.which("snakemake")
RUN_TIMEOUT_S = 300
# Long enough (a few seconds per training job) that the interruptions land mid-training.
ITERATIONS, CKPT_EVERY = 300, 50
TIMING_COLUMNS = ("train_seconds", "train_seconds_std", "rays_per_second", "rays_per_second_std")
RUN = "results/train/diffuse/{variant}/seed0"
VARIANTS = ("nerf", "mipnerf360")

pytestmark = [pytest.mark.workflow,
              pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")]


def write_config(path: Path) -> Path:
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["scenes"] = {"diffuse": cfg["scenes"]["diffuse"]}
    cfg["variants"] = {v: cfg["variants"][v] for v in VARIANTS}
    cfg["train_defaults"].update(iterations=ITERATIONS, ckpt_every=CKPT_EVERY)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def command(workdir: Path, config: Path, *extra: str) -> list[str]:
    return [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
            "--configfile", str(config), "--workflow-profile", str(PROFILE), *extra]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    return env


def run(workdir: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(workdir, config, *extra), cwd=workdir, env=environment(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc


def live_processes_in(workdir: Path) -> list[int]:
    """Pids of processes whose command line mentions `workdir` (orphans of a killed run)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(workdir) in cmdline:
                pids.append(int(entry.name))
    return pids


def wait_until_gone(workdir: Path) -> bool:
    """True once no process mentions `workdir` (killed processes vanish when they are reaped)."""
    deadline = time.monotonic() + 60
    while live_processes_in(workdir):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def default_sigint() -> None:
    """Give the workflow the default SIGINT disposition, as a terminal's Ctrl-C finds it. A test
    suite started in the background (`cmd &` without job control, as CI scripts often are) inherits
    SIGINT *ignored*, and Python keeps ignoring it: snakemake and its jobs would not see Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(workdir: Path, config: Path, sig: signal.Signals, pause_at: int) -> tuple[int, str]:
    """Start the workflow in its own process group with the trainers pausing after the checkpoint of
    iteration `pause_at`; once one has paused, send `sig` to the whole group and keep continuing the
    group until the workflow has ended. (A second trainer may reach its pause just after the
    signal, before handling it: continuing it again lets it handle the signal, so the outcome does
    not depend on timing.) Returns the exit status and the output."""
    env = {**environment(), "NERFPIPE_PAUSE_AFTER_CHECKPOINT": str(pause_at)}
    proc = subprocess.Popen(command(workdir, config), cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not stopped_in_group(proc.pid):
            assert proc.poll() is None, f"the workflow ended before the interruption:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, f"no trainer reached the checkpoint of iteration {pause_at}"
            time.sleep(0.05)
        os.killpg(proc.pid, sig)
        while True:
            if sig != signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
            try:
                output, _ = proc.communicate(timeout=1)
                return proc.returncode, output
            except subprocess.TimeoutExpired:
                assert time.monotonic() < deadline, f"the workflow did not end after {sig.name}"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def metric_rows(workdir: Path) -> list[dict[str, str]]:
    with open(workdir / "results" / "report" / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(c in rows[0] for c in TIMING_COLUMNS), "timing columns renamed: update TIMING_COLUMNS"
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def test_interrupted_workflow_resumes_to_identical_report(tmp_path) -> None:
    config = write_config(tmp_path / "interrupt.yaml")
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir()
    work.mkdir()
    run(ref, config)

    # Ctrl-C once a training job has written its checkpoint of iteration 50 (of 300).
    code, output = interrupt(work, config, signal.SIGINT, pause_at=CKPT_EVERY)
    # Snakemake answers Ctrl-C by terminating its jobs and exiting with a failure status (1; a
    # signal-style status where the interpreter itself is interrupted).
    assert code in (1, 130, -signal.SIGINT), (code, output[-3000:])
    assert not (work / "results" / "report" / "report.csv").exists(), "interrupted after the workflow ended"
    assert not any((work / RUN.format(variant=v) / "model.pt").exists() for v in VARIANTS), \
        "no training was interrupted"
    assert wait_until_gone(work), "jobs survived SIGINT"

    # SIGKILL of the whole group once the rerun has written its checkpoint of iteration 100.
    code, output = interrupt(work, config, signal.SIGKILL, pause_at=2 * CKPT_EVERY)
    assert code == -signal.SIGKILL, (code, output[-3000:])
    assert not (work / "results" / "report" / "report.csv").exists()
    assert wait_until_gone(work), "jobs survived SIGKILL of their process group"

    # A killed snakemake leaves its lock behind; `--unlock` is the documented way to clear it.
    subprocess.run(command(work, config, "--unlock"), cwd=work, env=environment(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=RUN_TIMEOUT_S)
    final = run(work, config, "--rerun-incomplete")
    assert "resuming" in "".join(
        (work / "results" / "logs" / "train" / "diffuse" / v / "seed0.log").read_text() for v in VARIANTS
    ), f"no training resumed from a checkpoint:\n{final.stdout[-3000:]}"
    assert metric_rows(work) == metric_rows(ref)
