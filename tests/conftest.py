"""Shared fixtures: a tiny generated scene with its ray cache, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """results-like tree for a 16x16 'diffuse' scene with 6 train / 1 val / 2 test views."""
    from nerfpipe.stages.data import prepare_scene
    from nerfpipe.stages.rays import build_ray_cache

    root = tmp_path_factory.mktemp("tiny")
    data, rays = root / "data" / "tiny", root / "rays" / "tiny"
    scene = {"synthetic": "diffuse", "resolution": 16, "n_train": 6, "n_val": 1, "n_test": 2, "seed": 0,
             "downscale": 1, "near": 2.0, "far": 6.0}
    prepare_scene("tiny", scene, data)
    build_ray_cache(data, rays)
    return {"root": root, "data": data, "rays": rays}


@pytest.fixture(scope="session")
def good_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid generated Blender-format scene: 16x16, 3 train / 1 val / 1 test views, with depth
    and normals. Tests copy it before changing anything."""
    from nerfpipe.data.synthetic import generate_scene

    root = tmp_path_factory.mktemp("good") / "scene"
    generate_scene("diffuse", root, resolution=16, n_train=3, n_val=1, n_test=1)
    return root


@pytest.fixture(scope="session")
def good_prepared(tmp_path_factory: pytest.TempPathFactory, good_scene: Path) -> Path:
    """The data stage's output for `good_scene` (the pristine copy, never handed to a failing run)."""
    from nerfpipe.stages.data import prepare_scene

    out = tmp_path_factory.mktemp("prepared") / "scene"
    prepare_scene("scene", {"path": str(good_scene)}, out)
    return out
