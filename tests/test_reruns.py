"""Reruns compute the right thing: what a rerun job trains, not only what Snakemake plans.

The workflow (config/smoke.yaml cut to an embedded scene and a Blender-format dataset on disk, two
variants, up to training) is run for real. Then one setting or one dataset image is changed and
the workflow rerun: the affected runs must hold exactly the weights of a fresh run with the new
setting or data (bit-identical on CPU), the others must be untouched. Two trainers on one folder
are serialised by a lock; the second is refused with one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
import yaml
from processes import wait_stopped

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "config" / "smoke.yaml"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = shutil.which("snakemake", path=str(VENV_BIN)) or shutil.which("snakemake")
TIMEOUT_S = 600
SCENES = ("diffuse", "real")
VARIANTS = ("nerf", "mipnerf360")

pytestmark = [pytest.mark.workflow,
              pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")]


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
    env.pop("NERFPIPE_PAUSE_AFTER_CHECKPOINT", None)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env.update(extra)
    return env


def write_config(path: Path, dataset: Path, edit=None) -> Path:
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["scenes"] = {"diffuse": cfg["scenes"]["diffuse"], "real": {"path": str(dataset)}}
    cfg["variants"] = {v: cfg["variants"][v] for v in VARIANTS}
    if edit:
        edit(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train_all(workdir: Path, config: Path) -> str:
    workdir.mkdir(exist_ok=True)
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(config), "--until", "train"]
    proc = subprocess.run(cmd, cwd=workdir, env=environment(), text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def model_path(workdir: Path, scene: str, variant: str) -> Path:
    return workdir / "results" / "train" / scene / variant / "seed0" / "model.pt"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def snapshot(workdir: Path) -> dict[tuple[str, str], tuple[bytes, int]]:
    return {(s, v): (model_path(workdir, s, v).read_bytes(), model_path(workdir, s, v).stat().st_mtime_ns)
            for s in SCENES for v in VARIANTS}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A completed run (up to training) of the two scenes x two variants."""
    from nerfpipe.data.synthetic import generate_scene

    root = tmp_path_factory.mktemp("reruns")
    dataset = root / "dataset"
    generate_scene("thin", dataset, resolution=16, n_train=6, n_val=1, n_test=2, seed=0)
    config = write_config(root / "base.yaml", dataset)
    work = root / "work"
    train_all(work, config)
    return {"root": root, "dataset": dataset, "config": config, "work": work}


def test_changed_lr_retrains_that_variant_from_scratch_to_fresh_run_weights(trained):
    root, work = trained["root"], trained["work"]
    before = snapshot(work)
    changed = write_config(root / "lr.yaml", trained["dataset"],
                           lambda cfg: cfg["variants"]["mipnerf360"].update(lr=5e-3))
    train_all(work, changed)
    fresh = root / "fresh_lr"
    train_all(fresh, changed)
    for scene in SCENES:
        new, ref = model_path(work, scene, "mipnerf360"), model_path(fresh, scene, "mipnerf360")
        assert same_weights(new, ref), f"{scene}: the rerun's weights differ from a fresh run with the new lr"
        old = root / "old.pt"
        old.write_bytes(before[(scene, "mipnerf360")][0])
        assert not same_weights(new, old), f"{scene}: the rerun kept the old weights"
        log = (work / "results" / "logs" / "train" / scene / "mipnerf360" / "seed0.log").read_text()
        assert "training from scratch" in log and "settings differ: lr" in log, log
        assert json.loads(new.with_name("config.json").read_text())["lr"] == 5e-3
        # The other variant was not retrained: same bytes, same modification time.
        path = model_path(work, scene, "nerf")
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before[(scene, "nerf")]
    train_all(work, trained["config"])  # back to the base settings for the next test


def test_edited_dataset_image_retrains_only_that_scene_to_fresh_run_weights(trained):
    root, work, dataset = trained["root"], trained["work"], trained["dataset"]
    train_all(work, trained["config"])  # up to date with the base settings
    before = snapshot(work)
    image_path = dataset / "train" / "r_0.png"
    image = iio.imread(image_path)
    image[4:8, 4:8] = [255, 0, 0, 255]
    iio.imwrite(image_path, image)

    out = train_all(work, trained["config"])
    assert "rule data:" in out
    fresh = root / "fresh_image"
    train_all(fresh, trained["config"])
    for variant in VARIANTS:
        new, ref = model_path(work, "real", variant), model_path(fresh, "real", variant)
        assert same_weights(new, ref), f"{variant}: weights differ from a fresh run on the edited data"
        assert new.read_bytes() != before[("real", variant)][0]
        log = (work / "results" / "logs" / "train" / "real" / variant / "seed0.log").read_text()
        assert "training from scratch" in log and "data or ray cache differ" in log, log
        path = model_path(work, "diffuse", variant)
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before[("diffuse", variant)]
    meta_old = json.loads((fresh / "results" / "data" / "real" / "meta.json").read_text())
    meta_new = json.loads((work / "results" / "data" / "real" / "meta.json").read_text())
    assert meta_old["fingerprint"] == meta_new["fingerprint"]


def _train_cmd(tiny_scene: dict[str, Path], out: Path, lr: float) -> list[str]:
    settings = {"method": "nerf", "iterations": 40, "ckpt_every": 10, "batch_size": 64, "n_samples": 8,
                "n_importance": 8, "net_depth": 2, "net_width": 16, "net_depth_fine": 2, "net_width_fine": 16,
                "lr": lr}
    return [sys.executable, "-m", "nerfpipe.cli", "train", "--data", str(tiny_scene["data"]), "--rays",
            str(tiny_scene["rays"]), "--out", str(out), "--settings", json.dumps(settings), "--threads", "1"]


def test_second_trainer_on_one_folder_is_refused_and_the_first_completes(tiny_scene, tmp_path):
    out = tmp_path / "run"
    env = environment(NERFPIPE_PAUSE_AFTER_CHECKPOINT="10", PYTHONPATH=str(REPO))
    first = subprocess.Popen(_train_cmd(tiny_scene, out, 1e-2), env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_stopped(first), "the first trainer never reached its checkpoint"  # holds the lock
        second = subprocess.run(_train_cmd(tiny_scene, out, 5e-3), env=environment(PYTHONPATH=str(REPO)),
                                text=True, capture_output=True, timeout=TIMEOUT_S)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert str(out) in lines[0] and f"pid {first.pid}" in lines[0], lines[0]
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=TIMEOUT_S)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    # The first trainer's results are its own: its lr, all its iterations, its own log.
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-2
    assert json.loads((out / "summary.json").read_text())["iterations"] == 40
    assert "resuming" not in err and "from scratch" not in err
