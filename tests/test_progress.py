"""Progress that reaches a log: periodic progress lines when stderr is not a terminal, -q / -v,
train_log.csv growing while training runs (and holding exactly the checkpoint's rows on resume),
and TensorBoard event files."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from processes import stopped_in_group, wait_stopped

from nerfpipe import cli, progress
from nerfpipe import io as nio

REPO = Path(__file__).resolve().parent.parent
TINY = {"method": "nerf", "net_depth": 2, "net_width": 16, "net_depth_fine": 2, "net_width_fine": 16,
        "n_samples": 4, "n_importance": 4, "pe_pos": 2, "pe_dir": 1, "batch_size": 64, "lr_warmup": 0,
        "iterations": 40, "log_every": 5, "ckpt_every": 10, "variant": "nerf", "seed": 0, "scene": "tiny"}
PROGRESS_LINE = re.compile(r"^train nerf: iteration (\d+)/(\d+) \(\d+%\), loss \S+, train PSNR \S+ dB, "
                           r"[\d,]+ rays/s, elapsed \d+:\d\d:\d\d, ETA (\d+:\d\d:\d\d|\?)$")
TIMEOUT_S = 300


def _train_cmd(tiny_scene, out: Path, settings: dict, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nerfpipe.cli", "train", "--data", str(tiny_scene["data"]), "--rays",
            str(tiny_scene["rays"]), "--out", str(out), "--settings", json.dumps(settings), "--threads", "1",
            "--device", "cpu", "--no-tensorboard", *extra]


def _start(cmd: list[str], pause_at: int | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NERFPIPE_PROGRESS_INTERVAL", None)
    if pause_at is not None:
        env["NERFPIPE_PAUSE_AFTER_CHECKPOINT"] = str(pause_at)
    # stdout and stderr both a pipe, so neither is a terminal
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            bufsize=1)


def _csv_iterations(path: Path) -> list[int]:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    return [int(line.split(",")[header.index("iteration")]) for line in lines[1:]]


def _checkpoint_rows(out: Path, iteration: int) -> list[dict]:
    return torch.load(out / "ckpt" / f"ckpt_{iteration:08d}.pt", weights_only=True)["log_rows"]


def _csv_text(rows: list[dict]) -> str:
    """What nerfpipe.io.write_csv writes for `rows`."""
    with tempfile.TemporaryDirectory() as tmp:
        nio.write_csv(Path(tmp) / "log.csv", rows, empty_header=("iteration",))
        return (Path(tmp) / "log.csv").read_text()


def test_training_prints_progress_lines_and_grows_its_log_while_running(tiny_scene, tmp_path) -> None:
    """Through the real CLI with stdout and stderr a pipe: progress lines arrive while training
    runs, and train_log.csv holds the rows so far at a checkpoint, then more at the end."""
    out = tmp_path / "run"
    proc = _start(_train_cmd(tiny_scene, out, TINY, "--progress-interval", "0.000001"), pause_at=20)
    try:
        seen: list[re.Match] = []
        while len(seen) < 2:
            line = proc.stdout.readline()
            assert line, f"output ended after {len(seen)} progress line(s); exit {proc.wait()}"
            match = PROGRESS_LINE.match(line.rstrip("\n"))
            if match:
                seen.append(match)
        assert proc.poll() is None, "the progress lines came only after training ended"
        assert [int(m.group(2)) for m in seen] == [40, 40]
        assert int(seen[0].group(1)) < int(seen[1].group(1)) <= 40

        assert wait_stopped(proc), "training never reached its checkpoint of iteration 20"
        log = out / "train_log.csv"
        assert _csv_iterations(log) == [5, 10, 15, 20]  # exactly what the checkpoint holds
        assert log.read_text() == _csv_text(_checkpoint_rows(out, 20))
        assert not (out / "model.pt").exists()
        proc.send_signal(signal.SIGCONT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=TIMEOUT_S) == 0, rest
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert _csv_iterations(log) == [5, 10, 15, 20, 25, 30, 35, 40]
    final_rows = _checkpoint_rows(out, 40)
    assert log.read_text() == _csv_text(final_rows)  # the final, atomic write: same text as before
    assert "train: " in rest and "Traceback" not in rest


def test_resumed_training_log_starts_from_the_checkpoint_rows(tiny_scene, tmp_path) -> None:
    """A run killed after a checkpoint leaves rows past it (here a stray one); the resumed run's
    train_log.csv holds exactly the checkpoint's rows, then grows from there."""
    out = tmp_path / "run"
    settings = {**TINY, "log_every": 2, "ckpt_every": 10, "iterations": 30}
    first = _start(_train_cmd(tiny_scene, out, settings), pause_at=10)
    try:
        assert wait_stopped(first), "training never reached its checkpoint of iteration 10"
    finally:
        first.kill()
        first.wait()
        first.stdout.close()
    log = out / "train_log.csv"
    assert _csv_iterations(log) == [2, 4, 6, 8, 10]
    with open(log, "a", newline="") as f:  # a row written after the checkpoint, before the kill
        f.write(log.read_text().splitlines()[-1].replace("10,", "12,", 1) + "\r\n")
    second = _start(_train_cmd(tiny_scene, out, settings), pause_at=20)
    try:
        assert wait_stopped(second), "resumed training never reached its checkpoint of iteration 20"
        assert _csv_iterations(log) == list(range(2, 21, 2))
        assert log.read_text() == _csv_text(_checkpoint_rows(out, 20))
        second.send_signal(signal.SIGCONT)
        output = second.stdout.read()
        assert second.wait(timeout=TIMEOUT_S) == 0, output
    finally:
        if second.poll() is None:
            second.send_signal(signal.SIGCONT)
            second.kill()
            second.wait()
        second.stdout.close()
    assert "resuming nerf" in output
    assert _csv_iterations(log) == list(range(2, 31, 2))


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory) -> Path:
    from nerfpipe.settings import check_train_settings
    from nerfpipe.stages.train import train

    out = tmp_path_factory.mktemp("progress") / "train"
    train(tiny_scene["data"], tiny_scene["rays"], out,
          check_train_settings({**TINY, "iterations": 4, "ckpt_every": 4}), threads=1, device="cpu",
          progress=False, tensorboard=False)
    return out


def test_evaluate_and_render_print_image_and_frame_progress(tiny_scene, trained, tmp_path, capsys) -> None:
    capsys.readouterr()
    assert cli.main(["evaluate", "--data", str(tiny_scene["data"]), "--train", str(trained), "--out",
                     str(tmp_path / "eval"), "--threads", "1", "--progress-interval", "1e-9"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("evaluate nerf: ")]
    n_test = json.loads((tiny_scene["data"] / "meta.json").read_text())["splits"]["test"]
    assert [line.split(", ")[0] for line in lines] == [f"evaluate nerf: image {i}/{n_test} "
                                                        f"({100 * i / n_test:.0f}%)"
                                                        for i in range(1, n_test + 1)], err
    assert all(re.search(r", elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$", line) for line in lines), err

    assert cli.main(["render", "--data", str(tiny_scene["data"]), "--train", str(trained), "--out",
                     str(tmp_path / "render"), "--threads", "1", "--settings", '{"frames": 3, "fps": 5}',
                     "--progress-interval", "1e-9"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("render nerf: ")]
    assert [line.split(", ")[0] for line in lines] == ["render nerf: frame 1/3 (33%)",
                                                        "render nerf: frame 2/3 (67%)",
                                                        "render nerf: frame 3/3 (100%)"], err


def test_quiet_prints_no_progress_and_verbose_prints_debug(tiny_scene, trained, tmp_path, capsys) -> None:
    capsys.readouterr()
    argv = ["evaluate", "--data", str(tiny_scene["data"]), "--train", str(trained), "--threads", "1",
            "--progress-interval", "1e-9"]
    assert cli.main([*argv, "--out", str(tmp_path / "quiet"), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("evaluate: ")
    assert cli.main([*argv, "--out", str(tmp_path / "verbose"), "-v"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^\S+ \S+ DEBUG nerfpipe\.cli: evaluate options: ", err, re.M), err
    assert re.search(r"INFO nerfpipe: evaluate nerf: image 1/", err), err
    # the next command in the same process is back to the defaults (INFO, 30 s)
    assert cli.main(["rays", "--data", str(tiny_scene["data"]), "--out", str(tmp_path / "rays")]) == 0
    assert capsys.readouterr().err == ""
    assert progress.interval() == progress.DEFAULT_INTERVAL_S


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_bad_progress_intervals_are_one_line(tmp_path, capsys, monkeypatch, value) -> None:
    argv = ["evaluate", "--data", str(tmp_path / "d"), "--train", str(tmp_path / "t"), "--out",
            str(tmp_path / "e")]
    monkeypatch.setenv(progress.INTERVAL_ENV, value)
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nerfpipe evaluate: error: {progress.INTERVAL_ENV}: expected a positive") and \
        err.count("\n") == 1, err
    monkeypatch.delenv(progress.INTERVAL_ENV)
    if value not in ("soon",):  # argparse itself refuses a non-number
        assert cli.main([*argv, "--progress-interval", value]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nerfpipe evaluate: error: --progress-interval: expected a positive"), err
    assert not (tmp_path / "e").exists()


def test_progress_lines_and_eta() -> None:
    p = progress.Progress(10, "job", unit="step", initial=2, mode="log", every=3600.0)
    assert not p.due()
    p.update(3)
    p.every = 0.0
    assert p.due()
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    progress.LOGGER.addHandler(handler)
    try:
        p.log("extra 1")
        assert not progress.Progress(5, "bar", mode="off").due()
    finally:
        progress.LOGGER.removeHandler(handler)
    assert len(records) == 1 and records[0].startswith("job: step 5/10 (50%), extra 1, elapsed 0:00:")
    assert re.search(r"ETA \d+:\d\d:\d\d$", records[0])
    assert progress.format_duration(3725) == "1:02:05" and progress.format_duration(float("inf")) == "?"


def test_live_csv_writes_what_write_csv_writes(tmp_path) -> None:
    path = tmp_path / "log.csv"
    live = progress.LiveCsv(path, empty_header=("iteration",))
    live.reset([])
    assert path.read_text() == _csv_text([])
    rows: list[dict] = []
    for i in range(1, 5):
        row = {"iteration": i, "loss": 1.0 / i, "psnr": None if i == 2 else 10.0 + i}
        if i == 4:
            row["extra"] = "new column"  # a new column rewrites the whole file
        rows.append(row)
        live.append(row, rows)
        assert path.read_text() == _csv_text(rows)
    live.reset(rows[:2])
    assert path.read_text() == _csv_text(rows[:2])


# ------------------------------------------------------------------ TensorBoard


def test_tensorboard_events_hold_the_scalars_and_images(tiny_scene, tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install "
                        "'nerfpipe[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nerfpipe.settings import check_train_settings
    from nerfpipe.stages.train import train
    from nerfpipe.tensorboard_log import TB_DIR

    settings = check_train_settings({**TINY, "iterations": 10, "log_every": 5, "ckpt_every": 5})
    with_tb, without = tmp_path / "tb_on", tmp_path / "tb_off"
    train(tiny_scene["data"], tiny_scene["rays"], with_tb, settings, threads=1, device="cpu", progress=False,
          tensorboard=True, tensorboard_every=5)
    train(tiny_scene["data"], tiny_scene["rays"], without, settings, threads=1, device="cpu",
          progress=False, tensorboard=False)
    assert not (without / TB_DIR).exists()
    events = EventAccumulator(str(with_tb / TB_DIR), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("loss/total", "loss/data", "train/psnr", "train/mse", "train/lr", "train/rays_per_s"):
        assert tag in tags["scalars"], tags
        assert [e.step for e in events.Scalars(tag)] == [5, 10]
    log = (with_tb / "train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    last_psnr = float(log[-1].split(",")[header.index("psnr")])
    assert events.Scalars("train/psnr")[-1].value == pytest.approx(last_psnr, rel=1e-6)
    assert "val/rgb" in tags["images"], tags
    assert [e.step for e in events.Images("val/rgb")] == [5, 10]
    # rendering the validation view does not change the weights
    wa, wb = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (with_tb, without))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # retrained from scratch (another lr) in the same folder: the old run's events are purged
    train(tiny_scene["data"], tiny_scene["rays"], with_tb, {**settings, "lr": 2e-3}, threads=1, device="cpu",
          progress=False, tensorboard=True, tensorboard_every=5)
    events = EventAccumulator(str(with_tb / TB_DIR), size_guidance={"scalars": 0})
    events.Reload()
    lr = events.Scalars("train/lr")
    assert [e.step for e in lr] == [5, 10]
    header = (with_tb / "train_log.csv").read_text().splitlines()[0].split(",")
    logged = [float(line.split(",")[header.index("lr")])
              for line in (with_tb / "train_log.csv").read_text().splitlines()[1:]]
    assert [e.value for e in lr] == pytest.approx(logged, rel=1e-6)


def test_tensorboard_switches(tiny_scene, tmp_path, capsys, monkeypatch) -> None:
    import nerfpipe.tensorboard_log as tbmod

    settings = json.dumps({**TINY, "iterations": 2, "ckpt_every": 2})
    argv = ["train", "--data", str(tiny_scene["data"]), "--rays", str(tiny_scene["rays"]), "--settings",
            settings, "--threads", "1", "--device", "cpu"]
    monkeypatch.setenv(tbmod.TENSORBOARD_ENV, "0")
    assert cli.main([*argv, "--out", str(tmp_path / "env_off")]) == 0
    assert not (tmp_path / "env_off" / tbmod.TB_DIR).exists()
    monkeypatch.setenv(tbmod.TENSORBOARD_ENV, "maybe")
    capsys.readouterr()
    assert cli.main([*argv, "--out", str(tmp_path / "bad")]) == 2
    assert "NERFPIPE_TENSORBOARD='maybe': expected 1, 0 or auto" in capsys.readouterr().err
    monkeypatch.delenv(tbmod.TENSORBOARD_ENV)
    monkeypatch.setattr(tbmod, "tensorboard_importable", lambda: False)
    assert cli.main([*argv, "--out", str(tmp_path / "auto")]) == 0  # auto: quietly without
    assert not (tmp_path / "auto" / tbmod.TB_DIR).exists()
    capsys.readouterr()
    assert cli.main([*argv, "--out", str(tmp_path / "asked"), "--tensorboard"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nerfpipe train: error: --tensorboard: TensorBoard logging needs the tensorboard "
                          "package") and err.count("\n") == 1, err
    assert not (tmp_path / "asked").exists()


def test_a_running_workflow_job_shows_progress_in_its_rule_log(tmp_path) -> None:
    """Under Snakemake (output redirected to the rule's log file) a training job's log holds
    progress lines and its train_log.csv holds rows while the job still runs: the trainer pauses
    itself at its checkpoint of iteration 20 (of 40), the test reads both files, then lets it go on."""
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    if snakemake is None:
        pytest.skip("snakemake is not installed")
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["scenes"] = {"diffuse": cfg["scenes"]["diffuse"]}
    cfg["variants"] = {"nerf": cfg["variants"]["nerf"]}
    cfg["train_defaults"].update(iterations=40, ckpt_every=10, log_every=5)
    config = tmp_path / "progress.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
           "NERFPIPE_PAUSE_AFTER_CHECKPOINT": "20", "NERFPIPE_PROGRESS_INTERVAL": "0.000001"}
    env.pop("SNAKEMAKE_PROFILE", None)
    cmd = [snakemake, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1",
           "--configfile", str(config), "--until", "train"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    rule_log = tmp_path / "results" / "logs" / "train" / "diffuse" / "nerf" / "seed0.log"
    csv_log = tmp_path / "results" / "train" / "diffuse" / "nerf" / "seed0" / "train_log.csv"
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not stopped_in_group(proc.pid):
            assert proc.poll() is None, f"the workflow ended before training paused:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "training never reached its checkpoint of iteration 20"
            time.sleep(0.05)
        lines = [m for m in map(PROGRESS_LINE.match, rule_log.read_text().splitlines()) if m]
        assert len(lines) >= 2 and all(int(m.group(2)) == 40 and int(m.group(1)) <= 20 for m in lines), \
            rule_log.read_text()
        assert _csv_iterations(csv_log) == [5, 10, 15, 20]
        os.killpg(proc.pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-4000:]
    assert _csv_iterations(csv_log) == [5, 10, 15, 20, 25, 30, 35, 40]
