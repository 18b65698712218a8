"""Bad input through the real CLI: exit status 2, one clear line on stderr naming the file or
config key and the problem, no traceback, nothing written for the scene, and earlier good
artifacts left byte-identical.

Most cases call `nerfpipe.cli.main` in process (the same code path as the console script, minus
the interpreter start-up); the cases marked `subprocess` run `python -m nerfpipe.cli` to prove
the exit status and stream of the real command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml

from nerfpipe import cli
from nerfpipe.stages.data import prepare_scene

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "config" / "smoke.yaml"
CONFIG = REPO / "config" / "config.yaml"
EXIT_BAD_INPUT = 2
SUBPROCESS_TIMEOUT_S = 120
TINY_TRAIN = {"method": "nerf", "net_depth": 2, "net_width": 16, "net_depth_fine": 2, "net_width_fine": 16,
              "n_samples": 4, "n_importance": 4, "pe_pos": 2, "pe_dir": 1, "batch_size": 32,
              "log_every": 1, "ckpt_every": 1, "lr_warmup": 0, "iterations": 1}


# ------------------------------------------------------------------ fixtures and helpers


def snapshot(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(out: Path) -> set[str]:
    return {p.name for p in out.parent.iterdir()} if out.parent.is_dir() else set()


def run_cli(argv: list[str], cwd: Path, subproc: bool, capsys) -> tuple[int, str]:
    """Run `nerfpipe ARGV` in `cwd`; return (exit status, stderr)."""
    if subproc:
        proc = subprocess.run([sys.executable, "-m", "nerfpipe.cli", *argv], cwd=cwd, capture_output=True,
                              text=True, timeout=SUBPROCESS_TIMEOUT_S,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        return proc.returncode, proc.stderr
    old = Path.cwd()
    os.chdir(cwd)
    try:
        capsys.readouterr()
        code = cli.main(argv)
        return code, capsys.readouterr().err
    finally:
        os.chdir(old)


def assert_one_clear_line(code: int, err: str, expected: list[str]) -> str:
    assert code == EXIT_BAD_INPUT, f"exit {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("nerfpipe ") and ": error: " in lines[0], err
    # One message: a config's schema errors continue it as indented lines, one per key.
    assert all(line.startswith("  ") for line in lines[1:]), f"more than one message on stderr:\n{err}"
    message = " ".join(line.strip() for line in lines)
    print(f"\nMESSAGE {message}")
    for needle in expected:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# ------------------------------------------------------------------ data-stage cases


def _edit_json(scene: Path, split: str, edit: Callable[[dict], None]) -> None:
    path = scene / f"transforms_{split}.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))  # NaN is written as the (Python-accepted) literal NaN


def _drop_key(key: str) -> Callable[[Path], None]:
    return lambda s: _edit_json(s, "train", lambda m: m.pop(key))


def _set_matrix(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def edit(meta: dict) -> None:
        frame = meta["frames"][1]
        frame["transform_matrix"] = transform(np.asarray(frame["transform_matrix"])).tolist()

    return lambda s: _edit_json(s, "train", edit)


def _truncate_png(scene: Path) -> None:
    png = scene / "train" / "r_1.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])


def _wrong_size(scene: Path) -> None:
    iio.imwrite(scene / "train" / "r_2.png", np.zeros((8, 8, 4), np.uint8))


def _nan_entry(pose: np.ndarray) -> np.ndarray:
    pose = pose.copy()
    pose[0, 3] = np.nan
    return pose


def _scaled(pose: np.ndarray) -> np.ndarray:
    pose = pose.copy()
    pose[:3, :3] *= 1.5  # a scaled rotation: the camera model assumes rigid poses
    return pose


@dataclass
class DataCase:
    id: str
    corrupt: Callable[[Path], None] | None  # edits a copy of the good scene
    expected: list[str]  # substrings of the message ("{scene}" = the scene folder)
    scene: dict = field(default_factory=dict)  # extra scene settings
    subprocess: bool = False
    missing_scene: bool = False


DATA_CASES = [
    DataCase("scene-folder-missing", None, ["{scene}", "scene folder not found"], missing_scene=True,
             subprocess=True),
    DataCase("transforms-missing", lambda s: (s / "transforms_train.json").unlink(),
             ["transforms_train.json", "transforms file not found"]),
    DataCase("transforms-not-json", lambda s: (s / "transforms_train.json").write_text('{"frames": ['),
             ["transforms_train.json", "not valid JSON"], subprocess=True),
    DataCase("missing-frames", _drop_key("frames"), ["transforms_train.json", "missing key 'frames'"]),
    DataCase("missing-camera_angle_x", _drop_key("camera_angle_x"),
             ["transforms_train.json", "missing key 'camera_angle_x'"]),
    DataCase("frame-image-missing", lambda s: (s / "train" / "r_1.png").unlink(),
             ["train/r_1.png", "frame 1", "not found"]),
    DataCase("truncated-png", _truncate_png, ["train/r_1.png", "cannot read image"]),
    DataCase("wrong-size-in-split", _wrong_size, ["train/r_2.png", "8x8", "16x16", "one size"]),
    DataCase("nonfinite-transform", _set_matrix(_nan_entry),
             ["transforms_train.json frame 1", "transform_matrix", "non-finite"]),
    DataCase("nonrigid-transform", _set_matrix(_scaled),
             ["transforms_train.json frame 1", "transform_matrix", "not rigid"]),
    DataCase("empty-split", lambda s: _edit_json(s, "test", lambda m: m.update(frames=[])),
             ["transforms_test.json", "'frames' is empty"]),
    DataCase("downscale-not-dividing", None, ["r_0.png", "downscale factor 3", "16x16"],
             scene={"downscale": 3}),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
@pytest.mark.parametrize("target", ["fresh-out", "over-good-out"])
def test_data_stage_rejects(case: DataCase, target: str, good_scene, good_prepared, tmp_path, capsys) -> None:
    scene = tmp_path / "input" / "scene"
    if not case.missing_scene:
        shutil.copytree(good_scene, scene)
    if case.corrupt is not None:
        case.corrupt(scene)
    out = tmp_path / "results" / "data" / "scene"
    before: dict[str, bytes] = {}
    if target == "over-good-out":
        shutil.copytree(good_prepared, out)
        before = snapshot(out)
    listing = siblings(out)
    settings = json.dumps({"path": str(scene), **case.scene})
    # The subprocess proves the real exit status once; the second target re-checks in process.
    subproc = case.subprocess and target == "fresh-out"
    code, err = run_cli(["data", "--settings", settings, "--out", str(out)], tmp_path, subproc, capsys)
    assert_one_clear_line(code, err, [e.replace("{scene}", str(scene)) for e in case.expected])
    assert siblings(out) == listing, "temporary folders left beside --out"
    if target == "fresh-out":
        assert not out.exists()
    else:
        assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["grayscale-8bit", "grayscale-16bit"])
def test_grayscale_and_16bit_pngs_are_accepted(kind: str, good_scene, tmp_path, capsys) -> None:
    scene = tmp_path / "scene"
    shutil.copytree(good_scene, scene)
    rng = np.random.default_rng(0)
    if kind == "grayscale-8bit":
        values = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
        expected = values / 255.0
    else:
        values = rng.integers(0, 65536, size=(16, 16), dtype=np.uint16)
        expected = values / 65535.0
    iio.imwrite(scene / "train" / "r_1.png", values)
    assert iio.imread(scene / "train" / "r_1.png").dtype == values.dtype  # really written at that depth
    out = tmp_path / "prepared"
    code, err = run_cli(["data", "--settings", json.dumps({"path": str(scene)}), "--out", str(out)], tmp_path,
                        False, capsys)
    assert code == 0, err
    rgba = np.load(out / "train_rgba.npy")
    assert rgba.shape == (3, 16, 16, 4)
    np.testing.assert_allclose(rgba[1, ..., :3], np.repeat(expected[..., None], 3, axis=-1), atol=1e-6)
    np.testing.assert_array_equal(rgba[1, ..., 3], 1.0)  # no alpha channel: opaque


# ------------------------------------------------------------------ config and settings cases


def _config_with(tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    cfg = yaml.safe_load(SMOKE.read_text())
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class ConfigCase:
    id: str
    argv: Callable[[Path], list[str]]  # tmp_path -> arguments
    expected: list[str]
    subprocess: bool = False


def _train_settings(**overrides) -> Callable[[Path], list[str]]:
    settings = json.dumps({**TINY_TRAIN, **overrides})
    return lambda t: ["train", "--settings", settings, "--data", str(t / "data"), "--rays", str(t / "rays"),
                      "--out", str(t / "results" / "train" / "scene")]


def _train_config(edit: Callable[[dict], None], scene: str = "diffuse", variant: str = "nerf"):
    return lambda t: ["train", "--config", str(_config_with(t, edit)), "--scene", scene, "--variant", variant]


def _set(section: str, key: str, value) -> Callable[[dict], None]:
    return lambda cfg: cfg[section].update({key: value})


CONFIG_CASES = [
    ConfigCase("unknown-scene", lambda t: ["train", "--config", str(CONFIG), "--scene", "nope",
                                           "--variant", "nerf"], ["scene 'nope' is not configured",
                                                                  "known scenes"], subprocess=True),
    ConfigCase("unknown-variant", lambda t: ["train", "--config", str(CONFIG), "--scene", "diffuse",
                                             "--variant", "nope"], ["variant 'nope' is not configured",
                                                                    "known variants"], subprocess=True),
    ConfigCase("config-key-misspelt",
               _train_config(lambda cfg: cfg["variants"]["nerf"].update(iteratons=5)),
               ["bad.yaml", "variants.nerf", "unknown key 'iteratons'", "did you mean 'iterations'"]),
    ConfigCase("settings-iterations-0", _train_settings(iterations=0),
               ["--settings", "iterations: 0", "minimum of 1"], subprocess=True),
    ConfigCase("settings-negative-batch_size", _train_settings(batch_size=-4),
               ["--settings", "batch_size", "-4", "minimum of 1"]),
    ConfigCase("settings-lr-0", _train_settings(lr=0),
               ["--settings", "lr: 0", "less than or equal to the minimum of 0"]),
    ConfigCase("config-iterations-0", _train_config(_set("train_defaults", "iterations", 0)),
               ["bad.yaml", "train_defaults.iterations: 0", "minimum of 1"]),
    ConfigCase("config-negative-batch_size", _train_config(_set("train_defaults", "batch_size", -4)),
               ["bad.yaml", "train_defaults.batch_size", "minimum of 1"]),
    ConfigCase("config-lr-0", _train_config(_set("train_defaults", "lr", 0)),
               ["bad.yaml", "train_defaults.lr: 0", "less than or equal to the minimum of 0"]),
    ConfigCase("config-unsafe-results-path",
               lambda t: ["data", "--config", str(_config_with(t, lambda cfg: cfg.update(results="../x"))),
                          "--scene", "diffuse"],
               ["bad.yaml", "results: '../x'", "relative to the working directory", "without '..'"],
               subprocess=True),
]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_config_and_settings_are_rejected_before_any_work(case: ConfigCase, tmp_path, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code, err = run_cli(case.argv(tmp_path), work, case.subprocess, capsys)
    assert_one_clear_line(code, err, case.expected)
    assert list(work.iterdir()) == [], "the working directory was written to"
    assert not (tmp_path / "results").exists() and not (tmp_path / "x").exists()


# ------------------------------------------------------------------ model files


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_scene) -> Path:
    """A finished one-iteration training run (model.pt and ckpt/ckpt_00000001.pt)."""
    from nerfpipe.stages.train import train

    out = tmp_path_factory.mktemp("trained") / "run"
    settings = {**TINY_TRAIN, "variant": "nerf", "seed": 0, "scene": "tiny"}
    from nerfpipe.settings import check_train_settings

    train(tiny_scene["data"], tiny_scene["rays"], out, check_train_settings(settings), threads=1,
          progress=False)
    return out


def test_corrupt_model_file_is_rejected_by_evaluate(trained, tiny_scene, tmp_path, capsys) -> None:
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    good = (trained / "model.pt").read_bytes()
    (train_dir / "model.pt").write_bytes(good[: len(good) // 3])
    out = tmp_path / "eval" / "tiny"
    code, err = run_cli(["evaluate", "--data", str(tiny_scene["data"]), "--train", str(train_dir),
                         "--out", str(out)], tmp_path, True, capsys)
    assert_one_clear_line(code, err, [str(train_dir / "model.pt"), "cannot read checkpoint"])
    assert not out.exists() and not out.parent.exists()


def test_checkpoint_of_other_model_size_is_discarded_in_one_line(trained, tiny_scene, tmp_path,
                                                                  capsys) -> None:
    """A checkpoint of another run (here another model size) is never resumed: training says so in
    one line naming the changed settings, removes it and trains from scratch."""
    out = tmp_path / "train" / "tiny"
    (out / "ckpt").mkdir(parents=True)
    shutil.copy(trained / "ckpt" / "ckpt_00000001.pt", out / "ckpt")
    settings = json.dumps({**TINY_TRAIN, "iterations": 3, "net_width": 24})
    code, err = run_cli(["train", "--settings", settings, "--data", str(tiny_scene["data"]), "--rays",
                         str(tiny_scene["rays"]), "--out", str(out), "--threads", "1"], tmp_path, False,
                        capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "from scratch" in line]
    assert len(notes) == 1 and "settings differ: iterations, net_width" in notes[0], err
    assert not (out / "ckpt" / "ckpt_00000001.pt").exists()
    assert json.loads((out / "summary.json").read_text())["iterations"] == 3
    assert siblings(out) == {"tiny"}


def test_model_with_nonfinite_weights_is_rejected_before_rendering(trained, tiny_scene, tmp_path,
                                                                    capsys) -> None:
    import torch

    train_dir = tmp_path / "train"
    train_dir.mkdir()
    ckpt = torch.load(trained / "model.pt", weights_only=True)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))
    torch.save(ckpt, train_dir / "model.pt")
    out = tmp_path / "eval" / "tiny"
    code, err = run_cli(["evaluate", "--data", str(tiny_scene["data"]), "--train", str(train_dir),
                         "--out", str(out)], tmp_path, False, capsys)
    assert_one_clear_line(code, err, [str(train_dir / "model.pt"), f"parameter {name}", "non-finite"])
    assert not out.exists() and not out.parent.exists()  # no renders of a diverged model


def test_images_smaller_than_the_ssim_window_are_rejected_by_evaluate(trained, tmp_path, capsys) -> None:
    data = tmp_path / "data" / "small"
    prepare_scene("small", {"synthetic": "diffuse", "resolution": 8, "n_train": 1, "n_val": 1, "n_test": 1},
                  data)
    out = tmp_path / "eval" / "small"
    argv = ["evaluate", "--data", str(data), "--train", str(trained), "--out", str(out)]
    code, err = run_cli(argv, tmp_path, False, capsys)
    assert_one_clear_line(code, err, [str(data / "meta.json"), "8x8", "at least 11x11", "SSIM"])
    assert not out.exists()
