"""Training: it learns, resumes exactly after SIGKILL, survives corrupt checkpoints, refuses
mismatched ones, and stops cleanly on persistent non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from processes import wait_stopped

from nerfpipe import config as cfgmod
from nerfpipe.errors import NerfpipeError
from nerfpipe.stages.train import train
from nerfpipe.training import learning_rate

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
    """Kill training with SIGKILL three times, each between two checkpoints (the trainer pauses
    itself after iteration N through NERFPIPE_PAUSE_AT_ITERATION, then gets SIGKILL), once more
    with a checkpoint write cut short (its temporary file left behind), and resume each time; the
    final weights and the logged losses equal an uninterrupted run's bit for bit. The kill points
    are iterations, not moments, so the test does the same on any machine."""
    settings = tiny_settings(method, iterations=150, ckpt_every=7, log_every=5)
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(tiny_scene, ref, settings), check=True, capture_output=True)
    out = tmp_path / "killed"
    for pause_at in (25, 74, 123):  # 4 iterations past the checkpoints of 21, 70 and 119
        env = {**os.environ, "NERFPIPE_PAUSE_AT_ITERATION": str(pause_at)}
        proc = subprocess.Popen(_train_cmd(tiny_scene, out, settings), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        try:
            assert wait_stopped(proc), f"training never reached iteration {pause_at}"
            assert _newest_checkpoint(out) == f"ckpt_{pause_at - 4:08d}.pt"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if pause_at == 74:  # a checkpoint write cut short by the kill leaves its temporary file
            (out / "ckpt" / ".ckpt_00000077.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    assert not (out / "model.pt").exists()
    subprocess.run(_train_cmd(tiny_scene, out, settings), check=True, capture_output=True)
    assert not list((out / "ckpt").glob(".ckpt_*.tmp"))  # the cut write's leftover was cleared
    w_ref, w_out = final_weights(ref), final_weights(out)
    assert all(torch.equal(w_ref[k], w_out[k]) for k in w_ref)
    logs = [(d / "train_log.csv").read_text().splitlines() for d in (ref, out)]
    header = logs[0][0].split(",")
    timing = {header.index(c) for c in ("elapsed_s", "rays_per_s")}
    rows = [[[v for i, v in enumerate(line.split(",")) if i not in timing] for line in log] for log in logs]
    assert rows[0] == rows[1]


def test_corrupt_newest_checkpoint_falls_back(tiny_scene, tmp_path, capsys) -> None:
    out, ref = tmp_path / "run", tmp_path / "ref"
    settings = tiny_settings(iterations=10, ckpt_every=5)
    train(tiny_scene["data"], tiny_scene["rays"], ref, settings, threads=1)
    train(tiny_scene["data"], tiny_scene["rays"], out, settings, threads=1)
    ckpts = sorted((out / "ckpt").glob("ckpt_*.pt"))
    assert [p.name for p in ckpts] == ["ckpt_00000005.pt", "ckpt_00000010.pt"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])  # truncated newest
    (out / "model.pt").unlink()
    capsys.readouterr()
    with pytest.warns(UserWarning, match="ckpt_00000010.pt"):
        train(tiny_scene["data"], tiny_scene["rays"], out, settings, threads=1)
    assert "iteration 5" in capsys.readouterr().err  # resumed from the older checkpoint
    w_ref, w_out = final_weights(ref), final_weights(out)
    assert all(torch.equal(w_ref[k], w_out[k]) for k in w_ref)


@pytest.mark.parametrize("change", [{"net_width": 48}, {"lr": 5e-3}, {"loss": "softl1"}, {"iterations": 12}])
def test_checkpoints_of_other_settings_are_discarded_not_resumed(tiny_scene, tmp_path, capsys,
                                                                 change) -> None:
    """A checkpoint resumes only the run it belongs to: after a change of any setting that
    determines the weights, training starts from scratch and ends with a fresh run's weights."""
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    base = tiny_settings(iterations=10, ckpt_every=5)
    train(tiny_scene["data"], tiny_scene["rays"], out, base, threads=1)
    capsys.readouterr()
    changed = {**base, **change}
    train(tiny_scene["data"], tiny_scene["rays"], out, changed, threads=1)
    err = capsys.readouterr().err
    assert "training from scratch" in err and f"settings differ: {next(iter(change))}" in err, err
    train(tiny_scene["data"], tiny_scene["rays"], fresh, changed, threads=1)
    w_out, w_fresh = final_weights(out), final_weights(fresh)
    assert all(torch.equal(w_out[k], w_fresh[k]) for k in w_out)


@pytest.mark.parametrize("change", [{"log_every": 2}, {"ckpt_every": 3}, {"eval_chunk": 64},
                                    {"render_depth": False}])
def test_settings_that_cannot_change_the_weights_keep_the_checkpoints(tiny_scene, tmp_path, capsys,
                                                                      change) -> None:
    out = tmp_path / "run"
    base = tiny_settings(iterations=10, ckpt_every=5)
    train(tiny_scene["data"], tiny_scene["rays"], out, base, threads=1)
    (out / "model.pt").unlink()
    capsys.readouterr()
    train(tiny_scene["data"], tiny_scene["rays"], out, {**base, **change}, threads=1)
    err = capsys.readouterr().err
    assert "resuming" in err and "from scratch" not in err, err


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
