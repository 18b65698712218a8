"""Hostile datasets and configs through the real CLI (`nerfpipe data`).

Every refusal must be: exit status 2, exactly one line on stderr starting `nerfpipe data: error:`
that names the file or key, no traceback, nothing left beside --out, and an earlier good output
folder byte-identical afterwards. Covered: dataset paths escaping the scene folder (while
symlinks inside it stay allowed), decompression bombs (image and .npy headers), memory limits
of generated scenes and of decoded splits, duplicated keys / tabs / python tags in YAML, a full
disk while generating, and property tests feeding random bytes and random JSON values to the
loader as transforms_train.json.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_bad_input import siblings, snapshot
from test_blender import IDENTITY, make_dataset, rgba_u8

from nerfpipe import cli
from nerfpipe.data.blender import MAX_SPLIT_BYTES_ENV
from nerfpipe.data.synthetic import MAX_SCENE_BYTES_ENV
from nerfpipe.stages.data import prepare_scene

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "config" / "smoke.yaml"
EXIT_BAD_INPUT = 2
PREFIX = "nerfpipe data: error: "


# ------------------------------------------------------------------ helpers and fixtures


def run_data(argv: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    """`nerfpipe data ARGV` in process (in `cwd`); return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["data", *argv])
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, stdout: str, stderr: str, needles: list[str]) -> str:
    """Exit 2 and exactly one stderr line `nerfpipe data: error: ...` containing every needle."""
    assert code == EXIT_BAD_INPUT, f"exit {code}, stderr:\n{stderr}"
    assert "Traceback" not in stderr + stdout, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith(PREFIX), stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    print(f"\nMESSAGE {lines[0]}")
    return lines[0]


@dataclass
class Guard:
    """A copy of a good output folder to aim a failing run at, and how it looked before."""

    out: Path
    before: dict[str, bytes]
    listing: set[str]

    def check_untouched(self) -> None:
        assert snapshot(self.out) == self.before, "the earlier good output was changed"
        assert siblings(self.out) == self.listing, "temporary folders left beside --out"


@pytest.fixture
def guard(good_prepared, tmp_path) -> Guard:
    out = tmp_path / "results" / "data" / "scene"
    shutil.copytree(good_prepared, out)
    return Guard(out, snapshot(out), siblings(out))


@pytest.fixture
def scene(good_scene, tmp_path) -> Path:
    """A private copy of the good scene to corrupt, with a valid image and arrays outside it."""
    copy = tmp_path / "input" / "scene"
    shutil.copytree(good_scene, copy)
    outside = tmp_path / "input" / "outside"
    outside.mkdir()
    shutil.copy(copy / "train" / "r_1.png", outside / "r_1.png")
    shutil.copy(copy / "train" / "r_1_depth.npy", outside / "r_1_depth.npy")
    shutil.copy(copy / "train" / "r_1.png", tmp_path / "input" / "scene.png")  # what "." would name
    return copy


def edit_frame(scene: Path, index: int, **changes) -> None:
    path = scene / "transforms_train.json"
    meta = json.loads(path.read_text())
    meta["frames"][index].update(changes)
    path.write_text(json.dumps(meta))


def png_with_size(path: Path, width: int, height: int) -> None:
    """A real PNG whose IHDR declares width x height (the pixel data of a 1x1 image follows)."""
    data = bytearray(iio.imwrite("<bytes>", np.zeros((1, 1, 4), np.uint8), extension=".png"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def data_argv(scene_settings: dict, out: Path) -> list[str]:
    return ["--out", str(out), "--settings", json.dumps(scene_settings)]


# ------------------------------------------------------------------ dataset paths


@dataclass
class PathCase:
    id: str
    key: str
    value: str | Callable[[Path], str]  # a file_path, or scene -> file_path
    expected: list[str]


PATH_CASES = [
    PathCase("parent-dir", "file_path", "../outside/r_1",
             ["transforms_train.json frame 1", "file_path '../outside/r_1'", "'..' component"]),
    PathCase("absolute", "file_path", lambda s: str(s.parent / "outside" / "r_1.png"),
             ["transforms_train.json frame 1", "outside/r_1.png'", "absolute path"]),
    PathCase("escape-through-subdir", "file_path", "foo/../../outside/r_1",
             ["transforms_train.json frame 1", "file_path 'foo/../../outside/r_1'", "'..' component"]),
    PathCase("scene-folder-itself", "file_path", "./",
             ["transforms_train.json frame 1", "file_path './'", "names the scene folder itself"]),
    PathCase("control-character", "file_path", "./train/r_1\nInjected: line",
             ["transforms_train.json frame 1", "file_path './train/r_1\\nInjected: line'",
              "control character"]),
    PathCase("depth-path-escape", "depth_path", "./../outside/r_1_depth.npy",
             ["transforms_train.json frame 1", "depth_path './../outside/r_1_depth.npy'", "'..' component"]),
]


@pytest.mark.parametrize("case", PATH_CASES, ids=[c.id for c in PATH_CASES])
def test_dataset_paths_must_stay_inside_the_scene(case: PathCase, scene: Path, guard: Guard) -> None:
    value = case.value(scene) if callable(case.value) else case.value
    edit_frame(scene, 1, **{case.key: value})
    code, out, err = run_data(data_argv({"path": str(scene)}, guard.out))
    assert_refused(code, out, err, [str(scene / "transforms_train.json"), *case.expected])
    guard.check_untouched()


def test_symlink_inside_the_dataset_pointing_outside_is_accepted(scene: Path, good_prepared: Path,
                                                                 tmp_path: Path) -> None:
    """git-annex / DVC checkouts: the file inside the dataset is a link to a store elsewhere."""
    store = tmp_path / "annex" / "objects"
    store.mkdir(parents=True)
    (scene / "train" / "r_1.png").rename(store / "SHA256E-s1234--abc.png")
    (scene / "train" / "r_1.png").symlink_to(store / "SHA256E-s1234--abc.png")
    shutil.move(scene / "test", store / "test")  # a linked folder, too
    (scene / "test").symlink_to(store / "test", target_is_directory=True)
    out = tmp_path / "prepared"
    code, stdout, err = run_data(data_argv({"path": str(scene)}, out))
    assert code == 0 and err == "", err
    for name in ("train_rgba.npy", "test_rgba.npy", "train_depth.npy"):
        assert (out / name).read_bytes() == (good_prepared / name).read_bytes()


# ------------------------------------------------------------------ bounded decoding


@pytest.mark.parametrize("width, height", [(40000, 40000), (9000, 9000)])
def test_image_header_declaring_too_many_pixels_is_refused_before_decoding(width: int, height: int,
                                                                           scene: Path, guard: Guard) -> None:
    # 40000x40000 RGBA would decode to 6 GiB (24 GiB as float32); 9000x9000 is under Pillow's
    # own limit (89 Mpx) but over MAX_IMAGE_PIXELS (64 Mpx).
    png_with_size(scene / "train" / "r_1.png", width, height)
    code, out, err = run_data(data_argv({"path": str(scene)}, guard.out))
    assert_refused(code, out, err, [str(scene / "train" / "r_1.png"), f"declares {width}x{height}",
                                    "MAX_IMAGE_PIXELS", "before decoding"])
    guard.check_untouched()


def test_npy_header_declaring_a_huge_array_is_refused_before_loading(scene: Path, guard: Guard) -> None:
    path = scene / "train" / "r_1_depth.npy"
    with open(path, "wb") as f:  # 40 GB of float32 declared, no data
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (100000, 100000)})
    code, out, err = run_data(data_argv({"path": str(scene)}, guard.out))
    assert_refused(code, out, err, [str(path), "depth has shape (100000, 100000)", "expected (16, 16)"])
    guard.check_untouched()


# ------------------------------------------------------------------ memory limits


@dataclass
class LimitCase:
    id: str
    scene: dict
    env: dict
    expected: list[str]


SYNTHETIC = {"synthetic": "diffuse", "resolution": 8, "n_train": 2, "n_val": 1, "n_test": 1}
LIMIT_CASES = [
    LimitCase("huge-resolution", {**SYNTHETIC, "resolution": 30000}, {},
              ["synthetic scene 'diffuse'", "resolution: 30000 needs about 1.9 TiB", "limit of 4.0 GiB",
               MAX_SCENE_BYTES_ENV]),
    LimitCase("too-many-views", {**SYNTHETIC, "n_train": 10**7}, {},
              ["synthetic scene 'diffuse'", "n_train 10000000", "needs about 19.1 GiB", "limit of 4.0 GiB"]),
    LimitCase("scene-limit-from-env", SYNTHETIC, {MAX_SCENE_BYTES_ENV: "100000"},
              ["synthetic scene 'diffuse'", "resolution: 8", "limit of 97.7 KiB", MAX_SCENE_BYTES_ENV]),
    LimitCase("scene-limit-env-not-a-number", SYNTHETIC, {MAX_SCENE_BYTES_ENV: "lots"},
              [f"environment variable {MAX_SCENE_BYTES_ENV}='lots'", "positive number of bytes"]),
    LimitCase("split-limit-from-env", None, {MAX_SPLIT_BYTES_ENV: "10000"},
              ["transforms_train.json", "split 'train' has 3 frames of 16x16", "needs about 24.0 KiB",
               "limit of 9.8 KiB", "MAX_SPLIT_BYTES", MAX_SPLIT_BYTES_ENV]),
]


@pytest.mark.parametrize("case", LIMIT_CASES, ids=[c.id for c in LIMIT_CASES])
def test_memory_limits_are_checked_before_allocating(case: LimitCase, scene: Path, guard: Guard,
                                                     monkeypatch) -> None:
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    settings_ = case.scene if case.scene is not None else {"path": str(scene)}
    code, out, err = run_data(data_argv(settings_, guard.out))
    assert_refused(code, out, err, case.expected)
    guard.check_untouched()


def test_split_limit_admits_a_split_that_fits(scene: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MAX_SPLIT_BYTES_ENV, str(3 * 16 * 16 * 8 * 4))  # train: exactly rgba+depth+normals
    code, out, err = run_data(data_argv({"path": str(scene)}, tmp_path / "prepared"))
    assert code == 0, err


# ------------------------------------------------------------------ YAML configs


@dataclass
class YamlCase:
    id: str
    edit: Callable[[str], str]  # smoke.yaml text -> hostile text
    expected: list[str]


def _replace_once(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)

    return edit


YAML_CASES = [
    YamlCase("duplicate-top-level-key", lambda t: t + "\ntrain_defaults:\n  iterations: 5\n",
             ["not valid YAML", "duplicate key 'train_defaults'", "first given at line"]),
    YamlCase("duplicate-nested-key",
             _replace_once("  iterations: 20\n", "  iterations: 20\n  iterations: 7\n"),
             ["not valid YAML", "duplicate key 'train_defaults.iterations'", "first given at line"]),
    YamlCase("duplicate-key-in-flow-mapping", _replace_once("diffuse: {synthetic: diffuse}",
                                                            "diffuse: {synthetic: diffuse, synthetic: thin}"),
             ["not valid YAML", "duplicate key 'scenes.diffuse.synthetic'"]),
    YamlCase("tab-indented", _replace_once("  iterations: 20\n", "\titerations: 20\n"),
             ["not valid YAML", "column 1", "found character '\\t' that cannot start any token",
              "YAML does not allow tabs"]),
    YamlCase("unclosed-flow-sequence", _replace_once("seeds: [0]", "seeds: [0"),
             ["not valid YAML", "while parsing a flow sequence at line"]),
    YamlCase("python-tag", _replace_once("results: results\n",
                                         "results: !!python/object/apply:os.system ['touch pwned']\n"),
             ["not valid YAML", ", column 10:", "python/object/apply:os.system",
              "python tags are refused"]),
]


@pytest.mark.parametrize("case", YAML_CASES, ids=[c.id for c in YAML_CASES])
def test_hostile_yaml_is_one_line(case: YamlCase, good_prepared: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    out = work / "results" / "data" / "diffuse"
    shutil.copytree(good_prepared, out)
    before, listing = snapshot(out), siblings(out)
    cfg = tmp_path / "hostile.yaml"
    cfg.write_text(case.edit(SMOKE.read_text()))
    code, stdout, err = run_data(["--config", str(cfg), "--scene", "diffuse"], cwd=work)
    line = assert_refused(code, stdout, err, [str(cfg), *case.expected])
    assert re.search(r": not valid YAML: line \d+, column \d+: ", line), line  # file, line, column, problem
    assert snapshot(out) == before and siblings(out) == listing
    assert sorted(p.name for p in work.iterdir()) == ["results"]  # nothing else written (no 'pwned')


def test_merge_keys_may_override_without_a_duplicate_error(tmp_path: Path) -> None:
    from nerfpipe.config import load_config

    text = SMOKE.read_text().replace("train_defaults:\n", "train_defaults: &td\n", 1)
    cfg = tmp_path / "merge.yaml"
    cfg.write_text(text.replace("variants:\n", "variants:\n  nerf_short: {<<: *td, method: nerf, "
                                "iterations: 3}\n", 1))
    assert load_config(cfg)["variants"]["nerf_short"]["iterations"] == 3


# ------------------------------------------------------------------ disk full


@pytest.mark.parametrize("victim", ["r_1.png", "transforms_val.json"])
def test_disk_full_while_generating_is_one_line(victim: str, guard: Guard, monkeypatch) -> None:
    real = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if self.name == victim or self.name.startswith(f".{victim}."):  # atomic_path's temp name
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    code, out, err = run_data(data_argv(SYNTHETIC, guard.out))
    monkeypatch.undo()
    # The generator names the file (r_1.png); transforms go through nerfpipe.io, whose message
    # names the file inside the generator's temporary folder.
    assert_refused(code, out, err, [f"/{victim}: cannot write", os.strerror(errno.ENOSPC)])
    guard.check_untouched()


# ------------------------------------------------------------------ hostile JSON values


HOSTILE_TRANSFORMS = {
    "int-beyond-str-digit-limit": '{"camera_angle_x": 1' + "0" * 5000 + ', "frames": []}',
    "nested-100000-deep": '{"frames": ' + "[" * 100000 + "]" * 100000 + "}",
    "fov-overflows-float": '{"camera_angle_x": 1' + "0" * 400 + ', "frames": []}',
    "matrix-entry-overflows-float": json.dumps({"camera_angle_x": 0.7, "frames": [
        {"file_path": "./train/r_0", "transform_matrix": [[10**400, 0, 0, 0]] * 4}]}),
    "fov-1e999-is-infinity": '{"camera_angle_x": 1e999, "frames": []}',
    "not-utf8": b"\xff\xfe{\x00}".decode("latin-1"),
}


@pytest.mark.parametrize("name", list(HOSTILE_TRANSFORMS))
def test_hostile_transforms_json(name: str, scene: Path, guard: Guard) -> None:
    (scene / "transforms_train.json").write_bytes(HOSTILE_TRANSFORMS[name].encode("latin-1"))
    code, out, err = run_data(data_argv({"path": str(scene)}, guard.out))
    assert_refused(code, out, err, [str(scene / "transforms_train.json")])
    guard.check_untouched()


# ------------------------------------------------------------------ property tests


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """4x4 images: 2 train views, 1 test view (val is taken from test)."""
    root = tmp_path_factory.mktemp("tiny") / "scene"
    make_dataset(root, {"r_0": rgba_u8(4, 4, (10, 20, 30, 255)), "r_1": rgba_u8(4, 4, (40, 50, 60, 128))})
    make_dataset(root, {"r_0": rgba_u8(4, 4, (70, 80, 90, 255))}, split="test")
    return root


def check_outcome(root: Path, out: Path) -> None:
    """Run the data stage on `root`: success, or a one-line refusal leaving `out` as it was."""
    before, listing = snapshot(out), siblings(out)
    code, stdout, err = run_data(data_argv({"path": str(root)}, out))
    assert "Traceback" not in stdout + err
    event("accepted" if code == 0 else "refused")
    if code == 0:
        assert err == "" and (out / "meta.json").is_file()
        return
    assert code == EXIT_BAD_INPUT, f"exit {code}: {err}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert str(root) in lines[0], lines[0]  # names a file of the dataset
    assert snapshot(out) == before and siblings(out) == listing


def _fresh_copy(tiny_dataset: Path, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("prop")
    root = base / "scene"
    shutil.copytree(tiny_dataset, root)
    out = base / "out" / "scene"
    prepare_scene("scene", {"path": str(tiny_dataset)}, out)
    return root, out


JSON_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats()
               | st.text(max_size=12) | st.sampled_from(["./train/r_0", "\ud800", "../x", "/etc/passwd", ""]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)
FILE_PATHS = st.one_of(
    st.sampled_from(["./train/r_0", "./train/r_1", "train/r_1.png", "./test/r_0"]),
    st.sampled_from(["./train/r_0", "./train/r_1", "train/r_1.png", "./test/r_0", "../scene/train/r_0",
                     "/etc/passwd", ".", "./", "", "train/../train/r_0", "./train/r_0\x00", "./train/\ud800",
                     "x" * 5000, "./train"]),
    st.text(max_size=30), JSON_VALUES)
MATRICES = st.one_of(
    st.just(IDENTITY), st.just(IDENTITY), JSON_VALUES,
    st.lists(st.lists(st.floats() | st.integers(), min_size=4, max_size=4), min_size=4, max_size=4))
FRAMES = st.fixed_dictionaries({"file_path": FILE_PATHS, "transform_matrix": MATRICES},
                               optional={"depth_path": FILE_PATHS, "normal_path": FILE_PATHS})
TRANSFORMS = st.one_of(
    JSON_VALUES, st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    st.fixed_dictionaries({"camera_angle_x": st.one_of(st.just(0.7), st.just(0.7), st.floats(), JSON_VALUES),
                           "frames": st.one_of(st.lists(FRAMES, min_size=1, max_size=3), JSON_VALUES)}),
)
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def prop_target(tiny_dataset, tmp_path_factory) -> tuple[Path, Path]:
    return _fresh_copy(tiny_dataset, tmp_path_factory)


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=300) | st.builds(lambda s, cut: s[:cut], st.just(json.dumps(
    {"camera_angle_x": 0.7, "frames": [{"file_path": "./train/r_0", "transform_matrix": IDENTITY}]})
    .encode()), st.integers(0, 200)))
def test_random_bytes_as_transforms(prop_target: tuple[Path, Path], data: bytes) -> None:
    root, out = prop_target
    (root / "transforms_train.json").write_bytes(data)
    check_outcome(root, out)


@PROPERTY_SETTINGS
@given(value=TRANSFORMS)
def test_random_json_values_as_transforms(prop_target: tuple[Path, Path], value) -> None:
    root, out = prop_target
    (root / "transforms_train.json").write_text(json.dumps(value))
    check_outcome(root, out)
