"""Hostile use of the stages' command lines: outputs that would clobber inputs, names that would
escape the results root, options and settings out of bounds, foreign checkpoints, and anything
unexpected. Each case: exit status 2 (1 for the top-level guard), exactly one line on stderr
naming the flag, key or file, no traceback, and earlier artifacts byte-identical afterwards.
Random JSON thrown at every stage's --settings (hypothesis) only ever succeeds or fails that way.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import snapshot

from nerfpipe import cli
from nerfpipe.data.synthetic import generate_scene
from nerfpipe.stages.data import prepare_scene
from nerfpipe.stages.rays import build_ray_cache

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "config" / "smoke.yaml"
TINY = {"method": "nerf", "net_depth": 2, "net_width": 16, "net_depth_fine": 2, "net_width_fine": 16,
        "n_samples": 4, "n_importance": 4, "pe_pos": 2, "pe_dir": 1, "batch_size": 32, "log_every": 1,
        "ckpt_every": 1, "lr_warmup": 0, "iterations": 2}


def run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *needles: str, status: int = 2) -> str:
    assert code == status, f"exit {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nerfpipe"), f"not one line:\n{err}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    print(f"\nMESSAGE {lines[0]}")
    return lines[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A dataset, its prepared data and rays, a trained tiny model and its evaluation, plus a
    second scene's data; every case must leave all of them byte-identical."""
    root = tmp_path_factory.mktemp("hostile")
    dataset = root / "dataset"
    generate_scene("diffuse", dataset, resolution=16, n_train=3, n_val=1, n_test=1)
    data, rays, other = root / "data" / "scene", root / "rays" / "scene", root / "data" / "other"
    prepare_scene("scene", {"path": str(dataset)}, data)
    prepare_scene("other", {"synthetic": "glossy", "resolution": 16, "n_train": 2, "n_val": 1, "n_test": 1},
                  other)
    build_ray_cache(data, rays)
    train_dir, eval_dir = root / "train", root / "eval"
    assert cli.main(["train", "--data", str(data), "--rays", str(rays), "--out", str(train_dir),
                     "--settings", json.dumps(TINY), "--device", "cpu"]) == 0
    assert cli.main(["evaluate", "--data", str(data), "--train", str(train_dir), "--out", str(eval_dir)]) == 0
    unrelated = root / "unrelated"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("keep me")
    return {"root": root, "dataset": dataset, "data": data, "rays": rays, "other": other, "train": train_dir,
            "eval": eval_dir, "unrelated": unrelated}


@pytest.fixture()
def intact(world):
    """Asserts after the test that every artifact of `world` is byte-identical."""
    before = {k: snapshot(v) for k, v in world.items() if k != "root"}
    yield world
    after = {k: snapshot(v) for k, v in world.items() if k != "root"}
    for key in before:
        assert after[key] == before[key], f"{key} changed"


def train_args(w, out, **settings) -> list:
    return ["train", "--data", w["data"], "--rays", w["rays"], "--out", out,
            "--settings", json.dumps({**TINY, **settings})]


# ------------------------------------------------------------------ outputs never clobber inputs


def test_data_out_onto_its_own_dataset_is_refused(intact, capsys):
    w = intact
    code, err = run(["data", "--out", w["dataset"], "--settings", json.dumps({"path": str(w["dataset"])})],
                    capsys)
    assert_one_line(code, err, str(w["dataset"]), "contains its input")


def test_data_out_inside_its_dataset_is_refused(intact, capsys):
    w = intact
    out = w["dataset"] / "prepared"
    code, err = run(["data", "--out", out, "--settings", json.dumps({"path": str(w["dataset"])})], capsys)
    assert_one_line(code, err, str(out), "inside its input")
    assert not out.exists()


def test_data_out_onto_an_unrelated_folder_is_refused(intact, capsys):
    w = intact
    code, err = run(["data", "--out", w["unrelated"], "--settings", json.dumps({"synthetic": "diffuse",
                                                                              "resolution": 16})], capsys)
    assert_one_line(code, err, str(w["unrelated"]), "not written by nerfpipe")


def test_rays_out_onto_an_unrelated_folder_is_refused(intact, capsys):
    w = intact
    code, err = run(["rays", "--data", w["data"], "--out", w["unrelated"]], capsys)
    assert_one_line(code, err, str(w["unrelated"]), "refusing")


def test_rays_out_onto_its_data_is_refused(intact, capsys):
    w = intact
    code, err = run(["rays", "--data", w["data"], "--out", w["data"]], capsys)
    assert_one_line(code, err, str(w["data"]), "contains its input")


def test_rays_out_onto_another_stage_output_is_refused(intact, capsys):
    w = intact
    code, err = run(["rays", "--data", w["data"], "--out", w["other"]], capsys)
    assert_one_line(code, err, str(w["other"]), "written by the data stage")


def test_train_out_onto_data_is_refused(intact, capsys):
    w = intact
    code, err = run(train_args(w, w["other"]), capsys)
    assert_one_line(code, err, str(w["other"]), "written by the data stage")


@pytest.mark.parametrize("stage", ["evaluate", "render"])
def test_evaluate_and_render_out_onto_the_training_folder_are_refused(intact, capsys, stage):
    w = intact
    code, err = run([stage, "--data", w["data"], "--train", w["train"], "--out", w["train"]], capsys)
    assert_one_line(code, err, str(w["train"]))


def test_evaluate_out_onto_an_unrelated_folder_is_refused(intact, capsys):
    w = intact
    code, err = run(["evaluate", "--data", w["data"], "--train", w["train"], "--out", w["unrelated"]], capsys)
    assert_one_line(code, err, str(w["unrelated"]), "not written by nerfpipe")


# ------------------------------------------------------------------ names stay inside the results root


@pytest.mark.parametrize("stage, flag", [("evaluate", "--variant"), ("render", "--variant"),
                                         ("train", "--variant"), ("evaluate", "--scene"), ("data", "--scene"),
                                         ("rays", "--scene")])
def test_path_like_names_are_refused_before_any_path_is_built(tmp_path, capsys, monkeypatch, stage, flag):
    monkeypatch.chdir(tmp_path)
    argv = [stage, "--config", SMOKE, "--scene", "diffuse", "--variant", "nerf"]
    argv[argv.index(flag) + 1] = "../../x"
    code, err = run(argv, capsys)
    assert_one_line(code, err, flag, "'../../x'", "letters, digits and underscores")
    assert list(tmp_path.iterdir()) == []


def test_train_settings_with_a_path_like_variant_are_refused(intact, capsys):
    code, err = run(train_args(intact, intact["root"] / "t", variant="../x"), capsys)
    assert_one_line(code, err, "variant", "'../x'")


# ------------------------------------------------------------------ one validator for options and settings


@pytest.mark.parametrize("stage", ["data", "train", "evaluate", "render", "report"])
def test_settings_that_are_not_json_are_one_line(intact, capsys, stage):
    code, err = run([stage, "--settings", "{not json", "--out", intact["root"] / "x"], capsys)
    assert_one_line(code, err, "--settings", "not valid JSON")


@pytest.mark.parametrize("stage, flag, value, needle", [
    ("train", "--threads", "-1", "--threads: -1 is less than the minimum of 1"),
    ("evaluate", "--threads", "0", "--threads: 0 is less than the minimum of 1"),
    ("render", "--threads", "-3", "--threads"),
    ("data", "--threads", "0", "--threads"),
    ("evaluate", "--chunk", "-5", "--chunk: -5 is less than the minimum of 1"),
    ("render", "--chunk", "0", "--chunk: 0 is less than the minimum of 1"),
    ("train", "--iterations", "0", "--iterations: 0 is less than the minimum of 1"),
    ("train", "--seed", "-2", "--seed: -2 is less than the minimum of 0"),
    ("train", "--grad_clip", "nan", "--grad_clip: nan is not a finite number"),
    ("train", "--grad_clip", "inf", "--grad_clip: inf is not a finite number"),
    ("train", "--threads", "many", "argument --threads: invalid int value"),
])
def test_options_out_of_bounds_are_refused_before_work(intact, capsys, stage, flag, value, needle):
    w = intact
    new = {s: w["root"] / f"new_{s}" for s in ("train", "eval", "render", "data")}
    argv = {"train": train_args(w, new["train"]),
            "evaluate": ["evaluate", "--data", w["data"], "--train", w["train"], "--out", new["eval"]],
            "render": ["render", "--data", w["data"], "--train", w["train"], "--out", new["render"]],
            "data": ["data", "--out", new["data"], "--settings", json.dumps({"synthetic": "thin"})],
            }[stage]
    code, err = run([*argv, flag, value], capsys)
    assert_one_line(code, err, needle)
    assert not any((w["root"] / f"new_{s}").exists() for s in ("train", "eval", "render", "data"))


@pytest.mark.parametrize("device, needle", [("gpu", "'gpu' is not a device name"),
                                            ("cuda", "'cuda' cannot be used"),
                                            ("cuda:7", "cannot be used"), ("mps", "only cpu and cuda")])
@pytest.mark.parametrize("stage", ["train", "evaluate", "render"])
def test_unusable_devices_are_one_line(intact, capsys, device, needle, stage):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    w = intact
    argv = train_args(w, w["root"] / "dev") if stage == "train" else \
        [stage, "--data", w["data"], "--train", w["train"], "--out", w["root"] / "dev"]
    code, err = run([*argv, "--device", device], capsys)
    assert_one_line(code, err, "--device", needle)
    assert not (w["root"] / "dev").exists()


@pytest.mark.parametrize("override, needle", [
    ({"lr": float("nan")}, "lr: nan is not a finite number"),
    ({"grad_clip": float("inf")}, "grad_clip: inf is not a finite number"),
    ({"n_importance": 0}, "n_importance: 0 is less than the minimum of 1"),
    ({"iterations": 0}, "iterations: 0 is less than the minimum of 1"),
    ({"batch_size": "256"}, "batch_size: '256' is not of type 'integer'"),
    ({"bogus": 1}, "unknown key 'bogus'"),
])
def test_training_settings_out_of_bounds_are_refused(intact, capsys, override, needle):
    out = intact["root"] / "bad_train"
    code, err = run(train_args(intact, out, **override), capsys)
    assert_one_line(code, err, "--settings", needle)
    assert not out.exists()


@pytest.mark.parametrize("stage, settings, needle", [
    ("render", {"frames": 0}, "frames"),
    ("render", {"fps": -1}, "fps"),
    ("render", {"radius": float("nan")}, "not a finite number"),
    ("render", {"eval_chunk": 0}, "eval_chunk"),
    ("render", {"frame": 3}, "frame"),
    ("evaluate", {"eval_chunk": -1}, "eval_chunk"),
    ("evaluate", {"lr": 1}, "unknown key 'lr'"),
    ("evaluate", [1, 2], "expected a JSON object"),
    ("data", {"synthetic": "diffuse", "resolution": 0}, "resolution"),
    ("data", {"synthetic": "diffuse", "near": 5, "far": 1}, "near"),
    ("data", {"path": "x", "synthetic": "thin"}, "exactly one of"),
])
def test_stage_settings_out_of_bounds_are_refused(intact, capsys, stage, settings, needle):
    w = intact
    out = w["root"] / f"bad_{stage}"
    argv = ["data", "--out", out] if stage == "data" else [stage, "--data", w["data"], "--train", w["train"],
                                                            "--out", out]
    code, err = run([*argv, "--settings", json.dumps(settings)], capsys)
    assert_one_line(code, err, needle)
    assert not out.exists()


# ------------------------------------------------------------------ foreign checkpoints and data


# torch's weights-only unpickler warns that the forged file uses pickle protocol 4 before refusing it
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_malicious_pickle_as_model_is_refused_in_one_line(intact, tmp_path, capsys):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    fake = tmp_path / "train"
    fake.mkdir()
    (fake / "model.pt").write_bytes(pickle.dumps({"model": Boom()}))
    code, err = run(["evaluate", "--data", intact["data"], "--train", fake, "--out", tmp_path / "e"], capsys)
    line = assert_one_line(code, err, "model.pt")
    assert "weights_only=False" not in line and "pwned" not in err


def test_evaluating_a_model_on_another_scenes_data_is_refused(intact, tmp_path, capsys):
    w = intact
    argv = ["evaluate", "--data", w["other"], "--train", w["train"], "--out", tmp_path / "e"]
    code, err = run(argv, capsys)
    assert_one_line(code, err, "model.pt", "trained on other data", "'other'")
    assert not (tmp_path / "e").exists()


def test_rendering_a_model_on_another_scenes_data_is_refused(intact, tmp_path, capsys):
    w = intact
    code, err = run(["render", "--data", w["other"], "--train", w["train"], "--out", tmp_path / "r"], capsys)
    assert_one_line(code, err, "trained on other data")


def test_unknown_scene_or_variant_with_config_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run(["evaluate", "--config", SMOKE, "--scene", "nope", "--variant", "nerf"], capsys)
    assert_one_line(code, err, "scene 'nope' is not configured")
    code, err = run(["evaluate", "--config", SMOKE, "--scene", "diffuse", "--variant", "nope"], capsys)
    assert_one_line(code, err, "variant 'nope' is not configured")


# ------------------------------------------------------------------ the top-level guard


def test_unexpected_errors_are_one_line_with_the_debug_hint(intact, tmp_path, capsys, monkeypatch):
    import nerfpipe.stages.rays

    def broken(*args, **kwargs):
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(nerfpipe.stages.rays, "build_ray_cache", broken)
    code, err = run(["rays", "--data", intact["data"], "--out", tmp_path / "r"], capsys)
    assert_one_line(code, err, "unexpected error: RuntimeError: something unexpected",
                    "NERFPIPE_DEBUG=1", status=1)
    monkeypatch.setenv("NERFPIPE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["rays", "--data", str(intact["data"]), "--out", str(tmp_path / "r")])


# ------------------------------------------------------------------ random settings at every stage

SETTING_KEYS = ["method", "iterations", "lr", "batch_size", "grad_clip", "n_samples", "n_importance",
                "frames", "fps", "eval_chunk", "render_depth", "synthetic", "path", "resolution", "near",
                "far", "scenes", "variants", "seeds", "baseline", "ablations", "variant", "seed"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
settings_objects = st.dictionaries(st.sampled_from(SETTING_KEYS) | st.text(max_size=6), json_values,
                                   max_size=5) | json_values


@pytest.mark.parametrize("stage", ["data", "train", "evaluate", "render", "report"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=settings_objects)
def test_random_settings_only_succeed_or_fail_in_one_line(world, tmp_path_factory, capsys, stage, value):
    w = world
    out = tmp_path_factory.mktemp("random") / "out"
    text = json.dumps(value)  # NaN and infinities become the literals Python's json accepts
    argv = {"data": ["data", "--out", out],
            "train": ["train", "--data", w["data"], "--rays", w["rays"], "--out", out, "--iterations", "1"],
            "evaluate": ["evaluate", "--data", w["data"], "--train", w["train"], "--out", out],
            "render": ["render", "--data", w["data"], "--train", w["train"], "--out", out],
            "report": ["report", "--out", out]}[stage]
    code, err = run([*argv, "--settings", text], capsys)
    if code != 0:
        assert_one_line(code, err)
        assert not out.exists() or not any(out.iterdir())
    shutil.rmtree(out.parent, ignore_errors=True)


def test_jobs_without_a_device_claim_different_gpus(tmp_path, monkeypatch):
    """On a machine with several GPUs each job without --device takes a free one (locks under
    NERFPIPE_GPU_LOCK_DIR); when all are taken they are shared."""
    import torch

    from nerfpipe import device

    monkeypatch.setenv("NERFPIPE_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    held = list(device._claimed)
    try:
        first, second = device.resolve_device(None), device.resolve_device("auto")
        assert (first, second) == (torch.device("cuda", 0), torch.device("cuda", 1))
        assert device.resolve_device(None).index in (0, 1)  # both held: shared
    finally:
        for fd in device._claimed[len(held):]:
            os.close(fd)
        device._claimed[:] = held
