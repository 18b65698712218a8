"""The workflow on a real (single-node, throw-away) SLURM cluster.

setup_slurm.sh installs slurm-wlm and munge where needed (root with apt-get only; otherwise
the tests are skipped with the reason) and starts munged, slurmctld and slurmd; every daemon
it started is stopped by its pid when the module's tests end, also when they fail.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SETUP = Path(__file__).resolve().parent / "setup_slurm.sh"
SMOKE = REPO / "config" / "smoke.yaml"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = shutil.which("snakemake", path=str(VENV_BIN)) or shutil.which("snakemake")
SKIP_STATUS = 77  # setup_slurm.sh: cannot run on this machine
SETUP_TIMEOUT_S = 600  # an apt-get installation on a slow mirror
RUN_TIMEOUT_S = 900
STOP_TIMEOUT_S = 15

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SLURM test needs Linux"),
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_daemons(state_dir: Path) -> None:
    """Stop every daemon setup_slurm.sh recorded in state_dir/pids, by pid."""
    pids_file = state_dir / "pids"
    if not pids_file.is_file():
        return
    pids = [int(line.split()[1]) for line in pids_file.read_text().splitlines() if line.strip()]
    for pid in reversed(pids):  # slurmd, slurmctld, then munged
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # slurmd's configless cache link points into state_dir, which is about to go.
    link = Path("/run/slurm/conf")
    if link.is_symlink() and str(state_dir) in os.readlink(link):
        link.unlink()


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory, request) -> dict:
    """A running single-node cluster; returns the environment its clients need."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    state_dir = tmp_path_factory.mktemp("slurm")
    request.addfinalizer(lambda: stop_daemons(state_dir))  # before starting: partial starts too
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(SETUP), str(state_dir), str(free_port()), str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=SETUP_TIMEOUT_S,
    )
    if proc.returncode == SKIP_STATUS:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(state_dir.glob("*.log")))
        pytest.fail(f"SLURM did not come up ({proc.returncode}):\n{proc.stdout}\n{logs}")
    print(f"SLURM set up in {time.monotonic() - started:.1f} s")
    env = dict(os.environ)
    env["SLURM_CONF"] = str(state_dir / "slurm.conf")
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])  # jobs inherit it
    env.pop("SNAKEMAKE_PROFILE", None)
    return env


def test_a_gpu_job_runs_through_the_scheduler(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    proc = subprocess.run(
        ["sbatch", "--wait", "--gpus=1", "--mem=100", "-c", "1", "-o", str(out),
         "--wrap", "echo gpus=$CUDA_VISIBLE_DEVICES host=$(hostname)"],
        env=slurm_cluster, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout
    assert re.search(r"Submitted batch job \d+", proc.stdout)
    assert "gpus=0" in out.read_text()  # the fake GPU was allocated


def _cli_missing() -> str | None:
    try:
        import nerfpipe.cli  # noqa: F401
    except ImportError as exc:
        return f"nerfpipe.cli is not importable ({exc})"
    if shutil.which("nerfpipe", path=str(VENV_BIN)) is None:
        return "the `nerfpipe` command is not installed in the environment (pip install -e .)"
    return None


def test_smoke_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    reason = _cli_missing()
    if reason:
        pytest.skip(reason)
    # The smoke config cut to one scene and two variants: the fake GPU serialises training.
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["scenes"] = {"diffuse": cfg["scenes"]["diffuse"]}
    cfg["variants"] = {"nerf": cfg["variants"]["nerf"], "mipnerf360": cfg["variants"]["mipnerf360"]}
    config = tmp_path / "slurm_smoke.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [
        SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(config), "--executor", "slurm",
        "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"),
        "--jobs", "4", "--retries", "0",
        # Poll soon: MinJobAge (300 s) stays above 3x this, so squeue answers for finished jobs.
        "--slurm-init-seconds-before-status-checks", "5",
        # Train and each evaluate+render group job ask for the (one) fake GPU, as the profile says.
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=slurm_cluster, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-8000:]

    # Every non-local job went through sbatch and left its SLURM log (kept by the profile). Each run's
    # evaluate and render went as one group job (the profile's `groups:`; its id is not a number).
    submitted = dict(re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", proc.stdout))
    logs = sorted((tmp_path / ".snakemake" / "slurm_logs").glob("*/**/*.log"))
    runs = sorted(str(p.parent.relative_to(tmp_path / ".snakemake" / "slurm_logs")) for p in logs)
    assert runs == sorted([
        "rule_data/diffuse", "rule_rays/diffuse",
        "rule_train/diffuse_nerf_0", "rule_train/diffuse_mipnerf360_0",
        "group_views_evaluate_render", "group_views_evaluate_render",
    ])
    assert {p.stem for p in logs} == set(submitted.values())
    assert not any("rule_report" in str(p) for p in logs)  # a local rule

    # Training and the evaluate+render group jobs each asked the scheduler for one GPU: the group
    # runs render after evaluate, so it needs one, not two (records stay for MinJobAge seconds).
    gpu_ids = [p.stem for p in logs if p.parent.name.startswith(("diffuse_", "group_views"))]
    assert len(gpu_ids) == 4
    for job_id in gpu_ids:
        info = subprocess.run(["scontrol", "show", "job", job_id], env=slurm_cluster,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
        assert "JobState=COMPLETED" in info.stdout, info.stdout
        assert "gpu:1" in info.stdout and "gpu:2" not in info.stdout, info.stdout
    for variant in ("nerf", "mipnerf360"):
        assert (tmp_path / "results" / "eval" / "diffuse" / variant / "seed0" / "metrics.json").is_file()
        assert (tmp_path / "results" / "render" / "diffuse" / variant / "seed0" / "orbit_rgb.gif").is_file()

    with open(tmp_path / "results" / "report" / "report.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["scene"] == "diffuse"]  # not the summary rows
    assert sorted((r["scene"], r["variant"]) for r in rows) == [
        ("diffuse", "mipnerf360"), ("diffuse", "nerf")
    ]
