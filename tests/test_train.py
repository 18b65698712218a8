"""Training: it learns, resumes exactly after SIGKILL, survives corrupt checkpoints, refuses
mismatched ones, and stops cleanly on persistent non-finite losses."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nerfpipe import config as cfgmod
from nerfpipe.errors import NerfpipeError
from nerfpipe.train import learning_rate, train

TINY = {"net_depth": 2, "net_width": 32, "net_depth_fine": 2, "net_width_fine": 32, "n_samples": 8,
        "n_importance": 8, "prop_samples": [8], "prop_net_depth": 1, "prop_net_width": 16, "pe_pos": 4,
        "pe_dir": 2, "batch_size": 128, "log_every": 5, "ckpt_every": 5, "lr_warmup": 5}


def tiny_settings(method: str = "nerf", **overrides) -> dict:
    cfg = cfgmod.load_config("config/config.yaml")
    s = cfgmod.resolve_variant(cfg, method, seed=0)
    s.update(TINY, scene="tiny", iterations=30)
    s.update(overrides)
    return s


def final_weights(out: Path) -> dict:
    return torch.load(out / "model.pt", weights_only=True)["model"]


def test_learning_rate_schedule() -> None:
    s = {"lr": 1e-2, "lr_final": 1e-4, "lr_warmup": 10, "iterations": 100}
    assert learning_rate(s, 0) == pytest.approx(learning_rate({**s, "lr_warmup": 0}, 0) / 10)
    assert learning_rate({**s, "lr_warmup": 0}, 0) == pytest.approx(1e-2)
    assert learning_rate(s, 100) == pytest.approx(1e-4)
    assert learning_rate(s, 50) == pytest.approx(1e-3)  # log-linear: geometric mean half way


def test_training_reduces_loss_and_writes_outputs(tiny_scene, tmp_path) -> None:
    out = tmp_path / "run"
    summary = train(tiny_scene["data"], tiny_scene["rays"], out, tiny_settings(iterations=60), threads=1)
    for name in ("model.pt", "config.json", "train_log.csv", "summary.json"):
        assert (out / name).is_file()
    log = (out / "train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert {"iteration", "elapsed_s", "lr", "loss", "mse", "psnr", "rays_per_s", "loss_data"} <= set(header)
    losses = [float(line.split(",")[header.index("mse")]) for line in log[1:]]
    assert losses[-1] < losses[0]
    assert summary["iterations"] == 60 and summary["n_params"] > 0 and summary["skipped_steps"] == 0
    assert json.loads((out / "config.json").read_text())["method"] == "nerf"


def test_same_seed_same_weights_other_seed_differs(tiny_scene, tmp_path) -> None:
    a = train(tiny_scene["data"], tiny_scene["rays"], tmp_path / "a", tiny_settings(iterations=10), threads=1)
    b = train(tiny_scene["data"], tiny_scene["rays"], tmp_path / "b", tiny_settings(iterations=10), threads=1)
    c = train(tiny_scene["data"], tiny_scene["rays"], tmp_path / "c", tiny_settings(iterations=10, seed=1),
              threads=1)
    wa, wb, wc = (final_weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["final_loss"] == b["final_loss"] != c["final_loss"]


def _train_cmd(tiny_scene, out: Path, settings: dict) -> list[str]:
    return [sys.executable, "-m", "nerfpipe.cli", "train", "--data", str(tiny_scene["data"]), "--rays",
            str(tiny_scene["rays"]), "--out", str(out), "--settings", json.dumps(settings), "--threads", "1"]


def _newest_checkpoint(out: Path) -> str | None:
    ckpts = sorted((out / "ckpt").glob("ckpt_*.pt")) if (out / "ckpt").is_dir() else []
    return ckpts[-1].name if ckpts else None


@pytest.mark.parametrize("method", ["nerf", "mipnerf360"])
def test_sigkill_and_resume_is_bit_identical(tiny_scene, tmp_path, method) -> None:
    """Kill training with SIGKILL at random moments after fresh checkpoints, several times, and
    resume each time; the final weights and the logged losses equal an uninterrupted run's bit
    for bit."""
    settings = tiny_settings(method, iterations=150, ckpt_every=7, log_every=5)
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(tiny_scene, ref, settings), check=True, capture_output=True)
    out = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    while kills < 3 and not (out / "model.pt").exists():
        before = _newest_checkpoint(out)
        proc = subprocess.Popen(_train_cmd(tiny_scene, out, settings), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and _newest_checkpoint(out) == before and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))  # somewhere between two checkpoints, or mid-write
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    subprocess.run(_train_cmd(tiny_scene, out, settings), check=True, capture_output=True)
    assert kills >= 2, "training finished before it could be killed twice; raise iterations"
    w_ref, w_out = final_weights(ref), final_weights(out)
    assert all(torch.equal(w_ref[k], w_out[k]) for k in w_ref)
    logs = [(d / "train_log.csv").read_text().splitlines() for d in (ref, out)]
    header = logs[0][0].split(",")
    timing = {header.index(c) for c in ("elapsed_s", "rays_per_s")}
    rows = [[[v for i, v in enumerate(line.split(",")) if i not in timing] for line in log] for log in logs]
    assert rows[0] == rows[1]


def test_corrupt_newest_checkpoint_falls_back(tiny_scene, tmp_path) -> None:
    out = tmp_path / "run"
    settings = tiny_settings(iterations=10, ckpt_every=5)
    train(tiny_scene["data"], tiny_scene["rays"], out, settings, threads=1)
    ckpts = sorted((out / "ckpt").glob("ckpt_*.pt"))
    assert [p.name for p in ckpts] == ["ckpt_00000005.pt", "ckpt_00000010.pt"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])  # truncated newest
    (out / "model.pt").unlink()
    with pytest.warns(UserWarning, match="ckpt_00000010.pt"):
        train(tiny_scene["data"], tiny_scene["rays"], out, {**settings, "iterations": 12}, threads=1)
    assert torch.load(out / "model.pt", weights_only=True)["iteration"] == 12


def test_checkpoint_of_other_model_size_is_refused(tiny_scene, tmp_path) -> None:
    out = tmp_path / "run"
    train(tiny_scene["data"], tiny_scene["rays"], out, tiny_settings(iterations=5, ckpt_every=5), threads=1)
    with pytest.raises(NerfpipeError, match="different variant or model size"):
        train(tiny_scene["data"], tiny_scene["rays"], out, tiny_settings(iterations=10, net_width=48),
              threads=1)


def test_persistent_nan_stops_with_iteration_and_checkpoint(tiny_scene, tmp_path, monkeypatch) -> None:
    from nerfpipe.models.nerf import NeRF

    original = NeRF.loss_terms
    state = {"calls": 0}

    def poisoned(self, out, rays, target, loss_fn):
        state["calls"] += 1
        terms = original(self, out, rays, target, loss_fn)
        if state["calls"] > 7:  # finite for 7 steps, then NaN forever
            terms["data"] = terms["data"] * float("nan")
        return terms

    monkeypatch.setattr(NeRF, "loss_terms", poisoned)
    out = tmp_path / "run"
    with pytest.raises(NerfpipeError, match=r"3 steps in a row, last at iteration 9.*ckpt_00000005\.pt"), \
            pytest.warns(UserWarning, match="non-finite"):
        train(tiny_scene["data"], tiny_scene["rays"], out,
              tiny_settings(iterations=30, ckpt_every=5, max_bad_steps=3), threads=1)
    assert not (out / "model.pt").exists()
    ckpt = torch.load(sorted((out / "ckpt").glob("*.pt"))[-1], weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_isolated_nan_step_is_skipped_and_counted(tiny_scene, tmp_path, monkeypatch) -> None:
    from nerfpipe.models.nerf import NeRF

    original = NeRF.loss_terms
    state = {"calls": 0}

    def once(self, out, rays, target, loss_fn):
        state["calls"] += 1
        terms = original(self, out, rays, target, loss_fn)
        if state["calls"] == 4:
            terms["data"] = terms["data"] * float("inf")
        return terms

    monkeypatch.setattr(NeRF, "loss_terms", once)
    with pytest.warns(UserWarning, match="iteration 3: non-finite"):
        summary = train(tiny_scene["data"], tiny_scene["rays"], tmp_path / "r", tiny_settings(iterations=8),
                        threads=1)
    assert summary["skipped_steps"] == 1
