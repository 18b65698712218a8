"""The command line itself: help for every option, examples that parse, --version, the --no- forms
of the original implementation's flags, the options the workflow's rules pass, and
--max-in-memory (ray caches read batch by batch train the same weights)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from nerfpipe import __version__, cli, cli_parser

REPO = Path(__file__).resolve().parent.parent
TINY = {"method": "nerf", "net_depth": 2, "net_width": 16, "net_depth_fine": 2, "net_width_fine": 16,
        "n_samples": 4, "n_importance": 4, "pe_pos": 2, "pe_dir": 1, "batch_size": 64, "lr_warmup": 0,
        "iterations": 6, "log_every": 3, "ckpt_every": 3, "variant": "nerf", "seed": 0, "scene": "tiny"}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli_parser.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = sorted(subparsers())


def test_every_stage_has_a_subcommand() -> None:
    assert set(COMMANDS) == {"data", "rays", "train", "evaluate", "render", "report", "readme"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_listed_option_has_help_and_the_hidden_ones_are_the_ignored_ones(command) -> None:
    parser = subparsers()[command]
    hidden = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            hidden.extend(action.option_strings)
            continue
        assert action.help and action.help.strip(), f"nerfpipe {command} {action.option_strings}: no help"
    assert sorted(hidden) == sorted(cli_parser.IGNORED.get(command, ())), command
    text = parser.format_help()
    for flag in cli_parser.IGNORED.get(command, ()):
        assert flag not in text, f"nerfpipe {command} --help lists {flag}, which it does not use"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_two_examples_that_parse(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out.rstrip("\n")
    tail = text.split("\nexamples:\n")[-1].splitlines()
    assert len(tail) == 2 and "\nexamples:\n" in text, text
    for line in tail:
        argv = shlex.split(line.strip())
        assert argv[:2] == ["nerfpipe", command], line
        cli_parser.build_parser().parse_args(argv[1:])  # every flag of the example exists


@pytest.mark.parametrize("command, absent, present", [
    ("evaluate", ["--runtime", "--iterations", "--rays", "--srgb"], ["--seed", "--chunk", "--threads"]),
    ("render", ["--runtime", "--iterations", "--rays"], ["--seed", "--chunk", "--threads"]),
    ("data", ["--variant", "--seed", "--threads", "--device"], ["--scene", "--settings"]),
    ("rays", ["--variant", "--seed", "--threads", "--settings"], ["--scene", "--config"]),
    ("report", ["--threads", "--seed"], ["--manifest", "--results"]),
    ("train", ["--chunk", "--train"], ["--no-white_bkgd", "--no-amp", "--no-srgb", "--no-render_depth",
                                       "--no-render_normal", "--no-prop_normal", "--progress-interval"]),
])
def test_help_lists_what_a_command_uses(command, absent, present) -> None:
    text = subparsers()[command].format_help()
    flags = set(re.findall(r"(?<![\w-])-{1,2}[A-Za-z][\w-]*", text))
    assert not flags & set(absent), flags & set(absent)
    assert set(present) <= flags


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"nerfpipe {__version__}"


@pytest.mark.parametrize("argv", [
    # the command lines of workflow/rules/*.smk
    ["train", "--data", "d", "--rays", "r", "--out", "o", "--settings", "{}", "--runtime", "{}",
     "--threads", "2"],
    ["evaluate", "--data", "d", "--train", "t", "--out", "o", "--settings", "{}", "--threads", "2"],
    ["render", "--data", "d", "--train", "t", "--out", "o", "--settings", "{}", "--threads", "2"],
    ["data", "--out", "o", "--settings", "{}"],
    ["rays", "--data", "d", "--out", "o"],
    ["report", "--manifest", "m.json", "--out", "o"],
    # older command lines: options a command ignores are still accepted
    ["data", "--out", "o", "--settings", "{}", "--threads", "2", "--seed", "1", "--variant", "nerf"],
    ["rays", "--data", "d", "--out", "o", "--threads", "2", "--seed", "0", "--variant", "nerf"],
    ["report", "--manifest", "m.json", "--out", "o", "--threads", "1"],
    ["train", "--config", "c.yaml", "--scene", "s", "--variant", "v", "-t", "-u", "-s", "-w", "--grad_clip",
     "1.0", "--render_depth", "--render_normal", "--prop_normal", "--dataset_name", "blender"],
])
def test_existing_command_lines_parse(argv) -> None:
    args = cli_parser.build_parser().parse_args(argv)
    assert args.command == argv[0]


class Captured(Exception):
    pass


@pytest.fixture()
def captured_train(monkeypatch):
    """cli.main(["train", ...]) with nerfpipe.stages.train.train replaced: returns what it would get."""
    import nerfpipe.stages.train

    seen: dict = {}

    def fake_train(data, rays, out, settings, **kwargs):
        seen.update(settings=settings, kwargs=kwargs)
        raise Captured

    monkeypatch.setattr(nerfpipe.stages.train, "train", fake_train)

    def run(*flags: str) -> dict:
        seen.clear()
        argv = ["train", "--data", "d", "--rays", "r", "--out", "o", "--device", "cpu", "--settings",
                json.dumps(TINY), *flags]
        with pytest.raises(Captured):
            args = cli_parser.build_parser().parse_args(argv)
            cli._check_options(args)
            cli.COMMANDS[args.command](args)
        return seen

    return run


@pytest.mark.parametrize("flags, expected", [
    ([], {}),
    (["-u", "-s", "-w"], {"srgb": True, "amp": True, "white_bkgd": True}),
    (["--srgb", "--amp", "--white_bkgd"], {"srgb": True, "amp": True, "white_bkgd": True}),
    (["--no-srgb", "--no-amp", "--no-white_bkgd"], {"srgb": False, "amp": False, "white_bkgd": False}),
    (["--no-render_depth", "--render_normal", "--no-prop_normal"],
     {"render_depth": False, "render_normal": True, "prop_normal": False}),
    (["--prop_normal", "--no-render_normal"], {"prop_normal": True, "render_normal": False}),
    (["-w", "--no-white_bkgd"], {"white_bkgd": False}),  # the last one wins
])
def test_legacy_flags_and_their_no_forms_reach_the_settings(captured_train, flags, expected) -> None:
    from nerfpipe.settings import check_train_settings

    settings = captured_train(*flags)["settings"]
    defaults = check_train_settings(dict(TINY))  # what --settings alone gives
    for key, _short, _long, _help in ((k, *v) for k, v in cli_parser.LEGACY_BOOLEANS.items()):
        assert settings[key] == expected.get(key, defaults[key]), (key, flags)


def test_train_options_reach_the_trainer(captured_train) -> None:
    seen = captured_train("--no-tensorboard", "--tensorboard-every", "7", "--max-in-memory", "1024",
                          "-t", "--grad_clip", "0.5", "--iterations", "3", "--seed", "4")
    assert seen["kwargs"]["tensorboard"] is False and seen["kwargs"]["tensorboard_every"] == 7
    assert seen["kwargs"]["max_in_memory"] == 1024
    s = seen["settings"]
    assert (s["method"], s["grad_clip"], s["iterations"], s["seed"]) == ("refnerf", 0.5, 3, 4)
    assert captured_train()["kwargs"]["tensorboard"] is None  # auto


@pytest.mark.parametrize("flags, limit", [
    (["--job-mem-mb", "4000"], 4000 * 2**20 // 2),  # half the job's memory
    (["--job-mem-mb", "4000", "--max-in-memory", "1024"], 1024),  # an explicit limit wins
    ([], None),  # train's own default
])
def test_the_in_memory_limit_follows_the_jobs_memory(captured_train, flags, limit) -> None:
    assert captured_train(*flags)["kwargs"]["max_in_memory"] == limit


@pytest.mark.parametrize("flags, needle", [
    (["--max-in-memory", "-1"], "--max-in-memory: -1 is less than the minimum of 0"),
    (["--job-mem-mb", "0"], "--job-mem-mb: 0 is less than the minimum of 1"),
    (["--tensorboard-every", "0"], "--tensorboard-every: 0 is less than the minimum of 1"),
    (["--progress-interval", "0"], "--progress-interval: expected a positive number of seconds"),
    (["-v", "-q"], "argument -q/--quiet: not allowed with argument -v/--verbose"),
])
def test_bad_new_options_are_one_line(tmp_path, capsys, flags, needle) -> None:
    argv = ["train", "--data", str(tmp_path / "d"), "--rays", str(tmp_path / "r"), "--out",
            str(tmp_path / "o"), "--settings", json.dumps(TINY), *flags]
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nerfpipe train: error: ") and err.count("\n") == 1, err
    assert needle in err
    assert not (tmp_path / "o").exists()


def test_training_from_a_memory_mapped_ray_cache_gives_the_same_weights(tiny_scene, tmp_path, capsys,
                                                                        monkeypatch) -> None:
    """A ray cache above --max-in-memory (or $NERFPIPE_MAX_IN_MEMORY_BYTES) is read batch by batch
    from its memory map; the weights are bit-identical to training from memory."""
    from nerfpipe.raycache import MAX_IN_MEMORY_ENV, RayStore

    assert RayStore(tiny_scene["rays"], torch.device("cpu")).in_memory
    assert not RayStore(tiny_scene["rays"], torch.device("cpu"), max_in_memory=1024).in_memory
    base = ["train", "--data", str(tiny_scene["data"]), "--rays", str(tiny_scene["rays"]), "--settings",
            json.dumps({**TINY, "iterations": 12}), "--threads", "1", "--device", "cpu", "--no-tensorboard"]
    assert cli.main([*base, "--out", str(tmp_path / "memory")]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "mmap"), "--max-in-memory", "1024", "-v"]) == 0
    assert "read batch by batch from its memory map" in capsys.readouterr().err
    monkeypatch.setenv(MAX_IN_MEMORY_ENV, "0")
    assert cli.main([*base, "--out", str(tmp_path / "mmap_env")]) == 0
    weights = [torch.load(tmp_path / d / "model.pt", weights_only=True)["model"]
               for d in ("memory", "mmap", "mmap_env")]
    for other in weights[1:]:
        assert all(torch.equal(weights[0][k], other[k]) for k in weights[0])
    monkeypatch.setenv(MAX_IN_MEMORY_ENV, "lots")
    capsys.readouterr()
    assert cli.main([*base, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "NERFPIPE_MAX_IN_MEMORY_BYTES: expected a number of bytes >= 0, got 'lots'" in err, err
