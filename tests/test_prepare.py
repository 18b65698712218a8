"""Data stage: artifacts, shared loader path, downscaling, val fallback, atomic replacement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nerfpipe.cameras import focal_from_fov
from nerfpipe.data.blender import load_blender_split
from nerfpipe.data.splits import load_split
from nerfpipe.errors import NerfpipeError
from nerfpipe.stages.data import prepare_scene

SYN = {"synthetic": "thin", "resolution": 16, "n_train": 3, "n_val": 1, "n_test": 2, "seed": 0}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results") / "data" / "thin"
    prepare_scene("thin", SYN, out)
    return out


def test_synthetic_scene_artifacts(prepared: Path) -> None:
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["scene"] == "thin" and meta["source"] == "synthetic:thin"
    assert (meta["height"], meta["width"]) == (16, 16)
    assert meta["focal"] == pytest.approx(focal_from_fov(16, 0.6911112))
    assert meta["camera_angle_x"] == 0.6911112
    assert (meta["near"], meta["far"]) == (2.0, 6.0)
    assert meta["splits"] == {"train": 3, "val": 1, "test": 2}
    assert meta["has_depth"] is True and meta["has_normals"] is True
    for split, n in meta["splits"].items():
        data = load_split(prepared, split)
        ref = load_blender_split(prepared / "blender", split)  # the generated dataset is kept and reused
        assert data["rgba"].shape == (n, 16, 16, 4) and data["rgba"].dtype == np.float32
        assert data["poses"].shape == (n, 4, 4) and data["poses"].dtype == np.float32
        np.testing.assert_array_equal(data["rgba"], ref.rgba)
        np.testing.assert_array_equal(data["poses"], ref.poses)
        np.testing.assert_array_equal(data["depth"], ref.depth)
        np.testing.assert_array_equal(data["normals"], ref.normals)
        assert data["meta"] == meta
    assert (prepared / "blender" / "transforms_train.json").is_file()
    assert not [p for p in prepared.parent.iterdir() if p.name.startswith(".")]


def test_path_scene_with_downscale_and_near_far(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "real"
    prepare_scene("real", {"path": str(prepared / "blender"), "downscale": 2, "near": 2.5, "far": 5.5}, out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == str(prepared / "blender")
    assert (meta["height"], meta["width"]) == (8, 8)
    full = json.loads((prepared / "meta.json").read_text())
    assert meta["focal"] == pytest.approx(full["focal"] / 2)  # same field of view, half the pixels
    assert (meta["near"], meta["far"]) == (2.5, 5.5)
    assert not (out / "blender").exists()
    train = load_split(out, "train")
    np.testing.assert_allclose(train["rgba"][..., 3], load_split(prepared, "train")["rgba"][..., 3]
                               .reshape(3, 8, 2, 8, 2).mean(axis=(2, 4)), atol=1e-6)


def test_missing_val_split_uses_test_views(prepared: Path, tmp_path: Path) -> None:
    root = tmp_path / "shiny"
    shutil.copytree(prepared / "blender", root)
    (root / "transforms_val.json").unlink()
    out = tmp_path / "data" / "shiny"
    prepare_scene("shiny", {"path": str(root)}, out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["val_from_test"] is True and meta["splits"] == {"train": 3, "val": 2, "test": 2}
    np.testing.assert_array_equal(load_split(out, "val")["rgba"], load_split(out, "test")["rgba"])


def test_failure_leaves_previous_output_untouched(prepared: Path, tmp_path: Path) -> None:
    root = tmp_path / "src"
    shutil.copytree(prepared / "blender", root)
    out = tmp_path / "results" / "data" / "scene"
    prepare_scene("scene", {"path": str(root)}, out)
    before = snapshot(out)
    # corrupt the last test image: the failure happens after train/val were loaded
    last = root / "test" / "r_1.png"
    last.write_bytes(last.read_bytes()[:40])
    with pytest.raises(NerfpipeError, match=r"r_1\.png"):
        prepare_scene("scene", {"path": str(root)}, out)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["scene"]
    # a failing first run leaves nothing at all
    fresh = tmp_path / "results" / "data" / "fresh"
    with pytest.raises(NerfpipeError):
        prepare_scene("fresh", {"path": str(root)}, fresh)
    assert sorted(p.name for p in out.parent.iterdir()) == ["scene"]
    # success replaces the old output
    shutil.copy(prepared / "blender" / "test" / "r_1.png", last)
    prepare_scene("scene", {"path": str(root), "downscale": 2}, out)
    assert json.loads((out / "meta.json").read_text())["height"] == 8
    assert sorted(p.name for p in out.parent.iterdir()) == ["scene"]


def test_inconsistent_splits_rejected(prepared: Path, tmp_path: Path) -> None:
    root = tmp_path / "src"
    shutil.copytree(prepared / "blender", root)
    path = root / "transforms_test.json"
    data = json.loads(path.read_text())
    data["camera_angle_x"] = 0.5
    path.write_text(json.dumps(data))
    with pytest.raises(NerfpipeError, match="transforms_test.json.*camera_angle_x"):
        prepare_scene("x", {"path": str(root)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("scene, message", [
    ({"synthetic": "cube"}, "cube"),
    ({"synthetic": "thin", "path": "/x"}, "exactly one"),
    ({}, "exactly one"),
    ({**SYN, "near": 6.0, "far": 2.0}, "near"),
    ({**SYN, "resolution": 0}, "resolution"),
    ({**SYN, "downscale": 1.5}, "downscale"),
    ({"path": "/definitely/not/here"}, "/definitely/not/here"),
])
def test_bad_settings(tmp_path: Path, scene: dict, message: str) -> None:
    with pytest.raises(NerfpipeError, match=message):
        prepare_scene("bad", scene, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_load_split_errors(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(NerfpipeError, match="nowhere"):
        load_split(tmp_path / "nowhere", "train")
    with pytest.raises(NerfpipeError, match="'extra'"):
        load_split(prepared, "extra")
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    (copy / "val_rgba.npy").unlink()
    with pytest.raises(NerfpipeError, match="val_rgba.npy"):
        load_split(copy, "val")
