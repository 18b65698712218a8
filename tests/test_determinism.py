"""Same settings and seed -> byte-identical results on CPU, through the whole pipeline
(data -> rays -> train -> evaluate); another seed -> other metrics.

One run goes through the package functions in this process, the other through the CLI in fresh
interpreters, so the equality also covers process-level state (hash seeds, thread pools,
torch's global generator).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nerfpipe.settings import check_train_settings
from nerfpipe.stages.data import prepare_scene
from nerfpipe.stages.evaluate import evaluate
from nerfpipe.stages.rays import build_ray_cache
from nerfpipe.stages.train import train

REPO = Path(__file__).resolve().parent.parent
SCENE = {"synthetic": "diffuse", "resolution": 16, "n_train": 4, "n_val": 1, "n_test": 2, "seed": 0}
TINY = {"method": "nerf", "net_depth": 2, "net_width": 32, "net_depth_fine": 2, "net_width_fine": 32,
        "n_samples": 8, "n_importance": 8, "pe_pos": 4, "pe_dir": 2, "batch_size": 128, "iterations": 20,
        "log_every": 5, "ckpt_every": 10, "lr_warmup": 5, "scene": "tiny", "sampling_backend": "torch"}
COMPARED = ("data/meta.json", "data/train_rgba.npy", "rays/origins.npy", "rays/rgba.npy",
            "eval/metrics.json", "eval/per_image.csv", "eval/renders/000_rgb.png")


def settings(seed: int) -> dict:
    return check_train_settings({**TINY, "seed": seed})


def run_in_process(root: Path, seed: int) -> Path:
    prepare_scene("tiny", SCENE, root / "data")
    build_ray_cache(root / "data", root / "rays")
    train(root / "data", root / "rays", root / "train", settings(seed), threads=1, device="cpu",
          progress=False)
    evaluate(root / "data", root / "train", root / "eval", threads=1)
    return root


def run_cli(root: Path, seed: int) -> Path:
    root.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    steps = [
        ["data", "--settings", json.dumps(SCENE), "--scene", "tiny", "--out", "data"],
        ["rays", "--data", "data", "--out", "rays"],
        ["train", "--settings", json.dumps(settings(seed)), "--data", "data", "--rays", "rays",
         "--out", "train", "--threads", "1", "--device", "cpu"],
        ["evaluate", "--data", "data", "--train", "train", "--out", "eval", "--threads", "1"],
    ]
    for argv in steps:
        proc = subprocess.run([sys.executable, "-m", "nerfpipe.cli", *argv], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"nerfpipe {argv[0]} failed:\n{proc.stderr}"
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("determinism")
    return {"a": run_in_process(base / "a", 0), "b": run_cli(base / "b", 0),
            "c": run_in_process(base / "c", 1)}


@pytest.mark.parametrize("name", COMPARED)
def test_same_seed_gives_identical_bytes(runs, name: str) -> None:
    a, b = (runs[k] / name for k in "ab")
    assert a.read_bytes() == b.read_bytes(), f"{name} differs between two runs with the same seed"


def test_same_seed_gives_identical_weights(runs) -> None:
    wa, wb = (torch.load(runs[k] / "train" / "model.pt", weights_only=True)["model"] for k in "ab")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_other_seed_gives_other_metrics(runs) -> None:
    ma, mc = (json.loads((runs[k] / "eval" / "metrics.json").read_text()) for k in "ac")
    assert ma["seed"] == 0 and mc["seed"] == 1
    for key in ("psnr", "psnr_softl1", "ssim"):
        assert ma[key] != mc[key], key
    pa, pc = ((runs[k] / "eval" / "per_image.csv").read_text() for k in "ac")
    assert pa != pc
    # The data and ray stages do not depend on the training seed.
    assert (runs["a"] / "rays" / "rgba.npy").read_bytes() == (runs["c"] / "rays" / "rgba.npy").read_bytes()
