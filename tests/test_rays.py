"""Camera model, pixel-centre rays, cone radii, orbit poses and the ray cache layout."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfpipe import io as nio
from nerfpipe.cameras import camera_rays, focal_from_fov, look_at, orbit_poses, pixel_radii
from nerfpipe.errors import NerfpipeError
from nerfpipe.raycache import load_ray_cache
from nerfpipe.stages.rays import build_ray_cache


def random_pose(rng: np.random.Generator) -> np.ndarray:
    """A random rigid camera-to-world matrix (proper rotation from a QR decomposition)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    pose = np.eye(4)
    pose[:3, :3] = q
    pose[:3, 3] = rng.normal(size=3) * 3
    return pose


def project(point: np.ndarray, c2w: np.ndarray, focal: float, height: int,
            width: int) -> tuple[float, float, float]:
    """Pinhole projection (Blender camera): world point -> (x, y) image coordinates and camera z-depth."""
    cam = c2w[:3, :3].T @ (point - c2w[:3, 3])
    depth = -cam[2]
    return focal * cam[0] / depth + 0.5 * width, -focal * cam[1] / depth + 0.5 * height, depth


def test_focal_formula() -> None:
    assert focal_from_fov(800, 0.6911112) == pytest.approx(0.5 * 800 / math.tan(0.5 * 0.6911112))
    # 90 degree field of view: the image half-width equals the focal length
    assert focal_from_fov(64, math.pi / 2) == pytest.approx(32.0)
    # NeRF-synthetic at 800 px has focal ~1111.11
    assert focal_from_fov(800, 0.6911112) == pytest.approx(1111.111, abs=1e-2)


def test_pixel_centre_convention() -> None:
    # identity camera: pixel (x, y) centre is at ((x + 0.5 - W/2)/f, -(y + 0.5 - H/2)/f, -1)
    h, w, f = 5, 8, 7.0
    o, d = camera_rays(h, w, f, torch.eye(4, dtype=torch.float64))
    assert o.shape == (h, w, 3) and d.shape == (h, w, 3)
    assert torch.all(o == 0)
    assert d[0, 0].tolist() == pytest.approx([(0.5 - 4) / f, -(0.5 - 2.5) / f, -1.0])
    assert d[4, 7].tolist() == pytest.approx([(7.5 - 4) / f, -(4.5 - 2.5) / f, -1.0])
    # odd height: the middle row's rays have y = 0; even width: no column has x = 0
    assert torch.all(d[2, :, 1] == 0)
    assert torch.all(d[..., 0].abs() >= 0.5 / f - 1e-12)
    # +x to the right (increasing column), +y up (decreasing row)
    assert torch.all(d[:, 1:, 0] > d[:, :-1, 0]) and torch.all(d[1:, :, 1] < d[:-1, :, 1])


def test_ray_passes_through_point_projecting_to_pixel() -> None:
    rng = np.random.default_rng(0)
    h, w, f = 12, 17, 15.3
    for _ in range(5):
        c2w = random_pose(rng)
        o, d = camera_rays(h, w, f, torch.from_numpy(c2w))
        assert o.dtype == torch.float64
        for _ in range(20):
            x, y = int(rng.integers(w)), int(rng.integers(h))
            z = rng.uniform(0.5, 10.0)
            # the point at depth z that projects to the centre of pixel (x, y)
            cam = np.array([(x + 0.5 - w / 2) / f * z, -(y + 0.5 - h / 2) / f * z, -z])
            point = c2w[:3, :3] @ cam + c2w[:3, 3]
            # it lies on the ray at t = z (directions have camera z = -1, so t is z-depth)
            np.testing.assert_allclose(o[y, x].numpy() + z * d[y, x].numpy(), point, atol=1e-9)
            # and projecting it back lands on the pixel centre
            px, py, depth = project(point, c2w, f, h, w)
            assert (px, py, depth) == pytest.approx((x + 0.5, y + 0.5, z), abs=1e-9)


def test_camera_rays_batched_and_3x4() -> None:
    rng = np.random.default_rng(1)
    poses = np.stack([random_pose(rng) for _ in range(3)])
    o, d = camera_rays(4, 6, 5.0, torch.from_numpy(poses[:, :3, :]).float())
    assert o.shape == (3, 4, 6, 3) and d.shape == (3, 4, 6, 3) and d.dtype == torch.float32
    for i in range(3):
        oi, di = camera_rays(4, 6, 5.0, torch.from_numpy(poses[i]))
        np.testing.assert_allclose(d[i].numpy(), di.numpy(), atol=1e-5)
        np.testing.assert_allclose(o[i].numpy(), oi.numpy(), atol=1e-5)
    with pytest.raises(ValueError):
        camera_rays(4, 6, 5.0, torch.eye(3))


def test_radii_match_multinerf_pixel_footprint() -> None:
    # multinerf: dx = distance between neighbouring (unnormalised) directions; radii = dx * 2/sqrt(12)
    rng = np.random.default_rng(2)
    h, w, f = 9, 11, 13.0
    _, d = camera_rays(h, w, f, torch.from_numpy(random_pose(rng)))
    dx = torch.linalg.norm(d[:, 1:] - d[:, :-1], dim=-1)
    np.testing.assert_allclose((dx * 2 / math.sqrt(12)).numpy(), pixel_radii(h, w, f), rtol=1e-10)
    assert pixel_radii(h, w, f) == pytest.approx(2 / math.sqrt(12) / f)


def check_rigid_looking_at_origin(c2w: np.ndarray) -> None:
    rot = c2w[:3, :3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-6)
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])
    eye = c2w[:3, 3]
    # camera -z axis points at the origin
    np.testing.assert_allclose(-rot[:, 2], -eye / np.linalg.norm(eye), atol=1e-6)
    # camera x is horizontal, camera y has an upward (+z) component
    assert abs(rot[2, 0]) < 1e-6
    assert rot[2, 1] > 0


def test_look_at() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        eye = rng.normal(size=3) * 3
        check_rigid_looking_at_origin(look_at(eye))
    # the centre pixel of a camera from look_at sees the target
    c2w = look_at([1.0, -2.0, 3.0], target=(0.5, 0.5, 0.5))
    _, d = camera_rays(3, 3, 2.0, torch.from_numpy(c2w))
    t = np.array([0.5, 0.5, 0.5]) - c2w[:3, 3]
    np.testing.assert_allclose(np.cross(d[1, 1].numpy(), t), 0, atol=1e-9)
    # zenith camera: still a rigid pose looking down
    top = look_at([0.0, 0.0, 4.0])
    np.testing.assert_allclose(top[:3, :3].T @ top[:3, :3], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(top[:3, 2], [0, 0, 1], atol=1e-9)


def test_orbit_poses() -> None:
    poses = orbit_poses(8, 30.0, 4.0).numpy().astype(np.float64)
    assert poses.shape == (8, 4, 4)
    for c2w in poses:
        eye = c2w[:3, 3]
        assert np.linalg.norm(eye) == pytest.approx(4.0, abs=1e-5)
        assert eye[2] == pytest.approx(4.0 * math.sin(math.radians(30.0)), abs=1e-5)
        check_rigid_looking_at_origin(c2w)
    az = np.arctan2(poses[:, 1, 3], poses[:, 0, 3])
    np.testing.assert_allclose(np.diff(np.unwrap(az)), 2 * math.pi / 8, atol=1e-5)


def write_data_dir(path: Path, rgba: np.ndarray, poses: np.ndarray, focal: float) -> None:
    n, h, w = rgba.shape[:3]
    nio.save_npy(path / "train_rgba.npy", rgba)
    nio.save_npy(path / "train_poses.npy", poses)
    nio.write_json(path / "meta.json", {
        "scene": "t", "source": "test", "height": h, "width": w, "focal": focal, "camera_angle_x": 0.7,
        "near": 2.0, "far": 6.0, "splits": {"train": n}, "has_depth": False, "has_normals": False,
        "fingerprint": f"data-{n}x{h}x{w}"})


def test_ray_cache_index_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n, h, w, f = 3, 5, 7, 6.5
    rgba = rng.uniform(size=(n, h, w, 4)).astype(np.float32)
    poses = np.stack([random_pose(rng) for _ in range(n)]).astype(np.float32)
    write_data_dir(tmp_path / "data", rgba, poses, f)
    build_ray_cache(tmp_path / "data", tmp_path / "rays")
    cache = load_ray_cache(tmp_path / "rays")
    fingerprint = cache["meta"].pop("fingerprint")
    assert cache["meta"] == {"height": h, "width": w, "n_images": n, "focal": f, "near": 2.0, "far": 6.0,
                             "data_fingerprint": f"data-{n}x{h}x{w}"}
    assert len(fingerprint) == 64  # the rays' own content identity (SHA-256), derived from the data's
    for key, c in (("origins", 3), ("directions", 3), ("viewdirs", 3), ("radii", 1), ("rgba", 4)):
        assert cache[key].shape == (n * h * w, c) and cache[key].dtype == np.float32
        assert isinstance(cache[key], np.memmap)
    for i in range(n):
        o, d = camera_rays(h, w, f, torch.from_numpy(poses[i]))
        for y in range(h):
            for x in range(w):
                idx = i * h * w + y * w + x
                np.testing.assert_allclose(cache["origins"][idx], o[y, x].numpy(), atol=1e-6)
                np.testing.assert_allclose(cache["directions"][idx], d[y, x].numpy(), atol=1e-6)
                unit = (d[y, x] / d[y, x].norm()).numpy()
                np.testing.assert_allclose(cache["viewdirs"][idx], unit, atol=1e-6)
                np.testing.assert_array_equal(cache["rgba"][idx], rgba[i, y, x])
    np.testing.assert_allclose(cache["radii"], pixel_radii(h, w, f), rtol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_ray_cache_failure_keeps_previous(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rgba = rng.uniform(size=(1, 2, 3, 4)).astype(np.float32)
    write_data_dir(tmp_path / "data", rgba, random_pose(rng)[None].astype(np.float32), 3.0)
    build_ray_cache(tmp_path / "data", tmp_path / "rays")
    before = {p.name: p.read_bytes() for p in (tmp_path / "rays").iterdir()}
    assert ".nerfpipe-stage" in before  # the rays stage marks its folder as its own
    (tmp_path / "data" / "train_poses.npy").unlink()
    with pytest.raises(NerfpipeError, match="train_poses.npy"):
        build_ray_cache(tmp_path / "data", tmp_path / "rays")
    assert {p.name: p.read_bytes() for p in (tmp_path / "rays").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "rays"]
    with pytest.raises(NerfpipeError, match="nowhere"):
        load_ray_cache(tmp_path / "nowhere")
