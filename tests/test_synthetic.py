"""Embedded synthetic scenes: determinism, dataset format, cameras, ground truth and shading."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from nerfpipe.cameras import focal_from_fov
from nerfpipe.data import synthetic as syn
from nerfpipe.data import synthetic_primitives as syn_prim
from nerfpipe.data import synthetic_scenes as syn_scenes
from nerfpipe.data import synthetic_shading as syn_shading
from nerfpipe.data import synthetic_trace as syn_trace
from nerfpipe.errors import NerfpipeError

RES = 24


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("syn")
    out = {}
    for kind in syn.SCENES:
        out[kind] = root / kind
        syn.generate_scene(kind, out[kind], resolution=RES, n_train=3, n_val=2, n_test=8, seed=0)
    return out


def read_frames(root: Path, split: str) -> tuple[dict, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    meta = json.loads((root / f"transforms_{split}.json").read_text())
    rgba = [iio.imread(root / (f["file_path"][2:] + ".png")).astype(np.float64) / 255 for f in meta["frames"]]
    depth = [np.load(root / f["depth_path"][2:]) for f in meta["frames"]]
    normals = [np.load(root / f["normal_path"][2:]) for f in meta["frames"]]
    return meta, rgba, depth, normals


def all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    kw = {"resolution": 12, "n_train": 2, "n_val": 1, "n_test": 1}
    syn.generate_scene("thin", tmp_path / "a", seed=3, **kw)
    syn.generate_scene("thin", tmp_path / "b", seed=3, **kw)
    syn.generate_scene("thin", tmp_path / "c", seed=4, **kw)
    a, b, c = all_bytes(tmp_path / "a"), all_bytes(tmp_path / "b"), all_bytes(tmp_path / "c")
    assert len(a) == 3 + 4 * 3  # 3 transforms + (png, depth, normal) per view
    assert a == b
    assert a.keys() == c.keys()
    assert a["train/r_0.png"] != c["train/r_0.png"]
    assert a["transforms_train.json"] != c["transforms_train.json"]
    # regenerating over an existing folder replaces it and leaves no temporary siblings
    syn.generate_scene("thin", tmp_path / "a", seed=4, **kw)
    assert all_bytes(tmp_path / "a") == c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_dataset_format(scenes: dict[str, Path]) -> None:
    root = scenes["diffuse"]
    for split, n in (("train", 3), ("val", 2), ("test", 8)):
        meta, rgba, depth, normals = read_frames(root, split)
        assert meta["camera_angle_x"] == 0.6911112
        assert len(meta["frames"]) == n
        for i, frame in enumerate(meta["frames"]):
            assert frame["file_path"] == f"./{split}/r_{i}"  # no extension, as NeRF-synthetic
            assert frame["depth_path"] == f"./{split}/r_{i}_depth.npy"
            assert frame["normal_path"] == f"./{split}/r_{i}_normal.npy"
            assert np.asarray(frame["transform_matrix"]).shape == (4, 4)
        assert all(im.shape == (RES, RES, 4) for im in rgba)
        assert all(d.shape == (RES, RES) and d.dtype == np.float32 for d in depth)
        assert all(nm.shape == (RES, RES, 3) and nm.dtype == np.float32 for nm in normals)
    png = iio.imread(root / "train" / "r_0.png")
    assert png.dtype == np.uint8 and png.shape == (RES, RES, 4)


def test_cameras_on_upper_hemisphere_looking_at_origin(scenes: dict[str, Path]) -> None:
    eyes = {}
    for split in ("train", "val", "test"):
        meta = json.loads((scenes["glossy"] / f"transforms_{split}.json").read_text())
        poses = np.array([f["transform_matrix"] for f in meta["frames"]])
        eyes[split] = poses[:, :3, 3]
        np.testing.assert_allclose(np.linalg.norm(eyes[split], axis=-1), 4.0, atol=1e-9)
        assert np.all(eyes[split][:, 2] > 0)
        for pose in poses:
            rot = pose[:3, :3]
            np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-9)
            np.testing.assert_allclose(rot[:, 2], pose[:3, 3] / 4.0, atol=1e-9)  # -z looks at the origin
    for split in ("val", "test"):
        gap = np.linalg.norm(eyes[split][:, None] - eyes["train"][None], axis=-1)
        assert gap.min() > 1e-3


def test_camera_eyes_distinct_for_many_seeds() -> None:
    for seed in range(20):
        eyes = syn.camera_eyes(100, 10, 20, seed)
        for split in ("val", "test"):
            assert np.linalg.norm(eyes[split][:, None] - eyes["train"][None], axis=-1).min() > 1e-3
        assert np.all(eyes["train"][:, 2] > 0)


def pixel_rays(pose: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray]:
    """World directions (camera z = -1) [res, res, 3] of the pixel centres and the pixel footprint."""
    f = focal_from_fov(res, syn.CAMERA_ANGLE_X)
    x = np.arange(res) + 0.5
    xx, yy = np.meshgrid(x, x, indexing="xy")
    d_cam = np.stack([(xx - res / 2) / f, -(yy - res / 2) / f, -np.ones_like(xx)], -1)
    return d_cam @ pose[:3, :3].T, np.full((res, res), 1.0 / f)


@pytest.mark.parametrize("kind", syn.SCENES)
def test_alpha_zero_outside_object_and_ground_truth_consistent(scenes: dict[str, Path], kind: str) -> None:
    meta, rgba, depth, normals = read_frames(scenes[kind], "train")
    for frame, im, d, nm in zip(meta["frames"], rgba, depth, normals, strict=True):
        pose = np.asarray(frame["transform_matrix"])
        o = pose[:3, 3]
        dirs, pix = pixel_rays(pose, RES)
        unit = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
        # distance from the origin to each pixel-centre ray line
        closest = np.linalg.norm(np.cross(unit, -o), axis=-1)
        # a pixel's footprint reaches at most half a diagonal (times depth ~5.3) from its centre ray
        margin = math.sqrt(0.5) * pix * 5.5
        outside = closest > 1.32 + margin
        assert outside.sum() > RES * RES // 10
        assert np.all(im[outside, 3] == 0)
        assert np.all(im[im[..., 3] == 0, :3] == 0)
        fg = d > 0
        assert fg.any()
        # background pixels have no ground truth; a pixel-centre hit implies some coverage
        assert np.all(nm[~fg] == 0) and np.all(im[fg, 3] > 0)
        # alpha is a 3x3 coverage fraction
        np.testing.assert_allclose(im[..., 3] * 9, np.round(im[..., 3] * 9), atol=0.02)
        # the surface points lie inside the scene's radius; normals are unit and face the camera
        pts = o + dirs[fg] * d[fg][:, None]
        assert np.linalg.norm(pts, axis=-1).max() < 1.32
        np.testing.assert_allclose(np.linalg.norm(nm[fg], axis=-1), 1.0, atol=1e-5)
        assert np.all(np.sum(nm[fg] * unit[fg], axis=-1) < 1e-6)


def reprojection_match(depth_a: np.ndarray, pose_a: np.ndarray, depth_b: np.ndarray, pose_b: np.ndarray,
                       tol: float) -> tuple[float, float]:
    """Unproject view A's GT depth, project into view B, compare with B's GT depth at the landing pixel.

    Returns (fraction of landing-on-foreground points whose depth matches within tol,
    fraction that would lie in front of B's visible surface by more than tol).
    """
    res = depth_a.shape[0]
    f = focal_from_fov(res, syn.CAMERA_ANGLE_X)
    dirs, _ = pixel_rays(pose_a, res)
    fg = depth_a > 0
    pts = pose_a[:3, 3] + dirs[fg] * depth_a[fg][:, None]
    cam = (pts - pose_b[:3, 3]) @ pose_b[:3, :3]
    z = -cam[:, 2]
    u = np.floor(f * cam[:, 0] / z + res / 2).astype(int)
    v = np.floor(-f * cam[:, 1] / z + res / 2).astype(int)
    inside = (u >= 0) & (u < res) & (v >= 0) & (v < res)
    d_b = depth_b[v[inside], u[inside]]
    z = z[inside][d_b > 0]
    d_b = d_b[d_b > 0]
    assert len(z) > 30
    return float(np.mean(np.abs(z - d_b) < tol)), float(np.mean(z < d_b - tol))


def test_depth_reprojection_between_views(scenes: dict[str, Path]) -> None:
    for kind in ("diffuse", "glossy"):
        meta, _, depth, _ = read_frames(scenes[kind], "test")
        poses = [np.asarray(f["transform_matrix"]) for f in meta["frames"]]
        for a, b in ((0, 1), (1, 2), (5, 4)):  # neighbours on the 8-view orbit, 45 degrees apart
            match, in_front = reprojection_match(depth[a], poses[a], depth[b], poses[b], tol=0.1)
            assert match > 0.7, (kind, a, b, match)
            assert in_front < 0.1, (kind, a, b, in_front)
        # control: a camera moved by 0.3 no longer agrees with the depth map
        moved = poses[1].copy()
        moved[:3, 3] += 0.3 * moved[:3, 0]
        match, _ = reprojection_match(depth[0], poses[0], depth[1], moved, tol=0.1)
        assert match < 0.5


def visible_surface_points(scene: syn_scenes.Scene, rng: np.random.Generator,
                           n: int) -> tuple[np.ndarray, np.ndarray]:
    """Surface points hit from random cameras, and a second camera position that sees each point."""
    eyes_a = syn.camera_eyes(n, 1, 1, seed=int(rng.integers(1 << 30)))["train"]
    dirs = -eyes_a / np.linalg.norm(eyes_a, axis=-1, keepdims=True)
    dirs = dirs + rng.normal(scale=0.08, size=dirs.shape)
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    pts, second = [], []
    for eye, d in zip(eyes_a, dirs, strict=True):
        t, _, _ = syn_trace.trace_rays(scene, eye, d[None])
        if not np.isfinite(t[0]):
            continue
        p = eye + t[0] * d
        # second camera: rotate the first about the z axis by 40 degrees
        c, s = math.cos(math.radians(40)), math.sin(math.radians(40))
        eye_b = np.array([c * eye[0] - s * eye[1], s * eye[0] + c * eye[1], eye[2]])
        to_p = p - eye_b
        t_b, _, _ = syn_trace.trace_rays(scene, eye_b, (to_p / np.linalg.norm(to_p))[None])
        if abs(t_b[0] - np.linalg.norm(to_p)) < 1e-6:  # p is the first hit from eye_b too
            pts.append(p)
            second.append((eye, eye_b))
    return np.array(pts), np.array(second)


def colours_from_two_views(scene: syn_scenes.Scene, pts: np.ndarray,
                           eyes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for k in range(2):
        cols = []
        for p, pair in zip(pts, eyes, strict=True):
            d = (p - pair[k]) / np.linalg.norm(p - pair[k])
            _, _, rgb = syn_trace.trace_rays(scene, pair[k], d[None])
            cols.append(rgb[0])
        out.append(np.array(cols))
    return out[0], out[1]


def test_glossy_colour_depends_on_view_direction_diffuse_does_not() -> None:
    rng = np.random.default_rng(0)
    for kind in ("diffuse", "glossy"):
        scene = syn_scenes.build_scene(kind)
        pts, eyes = visible_surface_points(scene, rng, 60)
        assert len(pts) > 20
        c_a, c_b = colours_from_two_views(scene, pts, eyes)
        diff = np.abs(c_a - c_b).max(axis=-1)
        if kind == "diffuse":
            assert diff.max() < 1e-9  # Lambertian shading is baked: identical from every view
        else:
            assert np.median(diff) > 0.05
            assert np.mean(diff > 0.02) > 0.6


def test_environment_has_sun_and_horizon_structure() -> None:
    env = syn_shading.environment(np.array([syn_shading._SUN, [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]))
    assert env[0].min() > 1.0  # the sun is brighter than anything else
    assert env[1, 2] > env[1, 0]  # blue zenith
    assert env[2].max() < 0.5  # dark ground


def brute_force_first_hit(inside, origin: np.ndarray, d: np.ndarray, t_max: float = 8.0,
                          step: float = 1e-3) -> float:
    t = np.arange(0.0, t_max, step)
    hits = inside(origin + t[:, None] * d)
    return float(t[np.argmax(hits)]) if hits.any() else math.inf


def test_primitive_intersections_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    mat = syn_prim.Material(syn_scenes._constant((0.5, 0.5, 0.5)))
    cap = syn_prim.Capsule(np.array([-0.5, 0.2, 0.1]), np.array([0.4, -0.3, 0.5]), 0.2, mat)
    rot = syn_scenes._rot("z", 30) @ syn_scenes._rot("x", 20)
    box = syn_prim.Box(np.array([0.1, -0.2, 0.3]), rot, np.array([0.3, 0.5, 0.2]), mat)
    sph = syn_prim.Sphere(np.array([0.2, 0.1, -0.1]), 0.4, mat)

    def in_capsule(p: np.ndarray) -> np.ndarray:
        s = cap.axial(p)
        return np.linalg.norm(p - (cap.a + s[:, None] * (cap.b - cap.a)), axis=-1) <= cap.radius

    def in_box(p: np.ndarray) -> np.ndarray:
        return np.all(np.abs(box.local(p)) <= box.half, axis=-1)

    def in_sphere(p: np.ndarray) -> np.ndarray:
        return np.linalg.norm(p - sph.centre, axis=-1) <= sph.radius

    n_hits = 0
    for prim, inside in ((cap, in_capsule), (box, in_box), (sph, in_sphere)):
        for _ in range(40):
            origin = rng.normal(size=3)
            origin = 3.0 * origin / np.linalg.norm(origin)
            d = -origin / 3.0 + rng.normal(scale=0.1, size=3)
            d /= np.linalg.norm(d)
            t = prim.intersect(origin, d[None])[0]
            t_ref = brute_force_first_hit(inside, origin, d)
            if math.isinf(t_ref):
                assert math.isinf(t)
            else:
                n_hits += 1
                assert t == pytest.approx(t_ref, abs=2e-3)
                # the normal is the gradient direction: stepping along it leaves the solid
                p = origin + t * d
                n = prim.normal(p[None])[0]
                assert np.linalg.norm(n) == pytest.approx(1.0, abs=1e-6)
                assert inside((p - 1e-3 * n)[None])[0] and not inside((p + 1e-3 * n)[None])[0]
    assert n_hits > 40


def test_unknown_scene_and_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(NerfpipeError, match="cube"):
        syn.generate_scene("cube", tmp_path / "x")
    with pytest.raises(NerfpipeError, match="n_train"):
        syn.generate_scene("diffuse", tmp_path / "x", n_train=0)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- the mirror scene


def sphere_z_depth(origin: np.ndarray, d: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Analytic first hit of rays o + s d (d unnormalised, camera z = -1, so s is the z-depth) with a
    sphere: s [...] (inf on a miss)."""
    oc = origin - centre
    a, b, c = np.sum(d * d, axis=-1), 2.0 * d @ oc, oc @ oc - radius**2
    disc = b * b - 4.0 * a * c
    s = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
    return np.where((disc >= 0) & (s > 0), s, np.inf)


def mirror_geometry(pose: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-depth of the mirror sphere (analytic) and of the capsule along rays dirs [..., 3] (camera z = -1)."""
    sphere, capsule = syn_scenes.build_scene("mirror").primitives
    o = pose[:3, 3]
    s_sphere = sphere_z_depth(o, dirs, sphere.centre, sphere.radius)
    norm = np.linalg.norm(dirs, axis=-1)
    s_capsule = capsule.intersect(o, (dirs / norm[..., None]).reshape(-1, 3)).reshape(norm.shape) / norm
    return s_sphere, s_capsule


def test_mirror_sphere_depth_and_normals_are_analytic(scenes: dict[str, Path]) -> None:
    sphere = syn_scenes.build_scene("mirror").primitives[0]
    n_sphere = 0
    for split in ("train", "test"):
        meta, _, depth, normals = read_frames(scenes["mirror"], split)
        for frame, d, nm in zip(meta["frames"], depth, normals, strict=True):
            pose = np.asarray(frame["transform_matrix"])
            dirs, _ = pixel_rays(pose, RES)
            s_sphere, s_capsule = mirror_geometry(pose, dirs)
            on_sphere = s_sphere < s_capsule
            n_sphere += on_sphere.sum()
            np.testing.assert_allclose(d[on_sphere], s_sphere[on_sphere], rtol=1e-6, atol=1e-6)
            p = pose[:3, 3] + s_sphere[on_sphere][:, None] * dirs[on_sphere]
            np.testing.assert_allclose(nm[on_sphere], (p - sphere.centre) / sphere.radius, atol=1e-6)
            on_capsule = np.isfinite(s_capsule) & ~on_sphere
            np.testing.assert_allclose(d[on_capsule], s_capsule[on_capsule], rtol=1e-6, atol=1e-6)
            assert np.all(d[~on_sphere & ~on_capsule] == 0)  # everything else is background
    assert n_sphere > 0.15 * 11 * RES * RES  # the sphere covers a large part of every view


def test_mirror_pixels_reflect_the_environment(scenes: dict[str, Path]) -> None:
    """Brute force: each of a pixel's 3 x 3 sub-rays hits the sphere analytically, is reflected
    (r = d - 2 (d.n) n) and looks up the room; the PNG holds the mean of 0.95 x env(r), clipped."""
    sphere = syn_scenes.build_scene("mirror").primitives[0]
    meta, rgba, _, _ = read_frames(scenes["mirror"], "test")
    f = focal_from_fov(RES, syn.CAMERA_ANGLE_X)
    sub = (np.arange(3) + 0.5) / 3
    n_checked = 0
    for frame, im in zip(meta["frames"][:4], rgba[:4], strict=True):
        pose = np.asarray(frame["transform_matrix"])
        rows, cols = np.nonzero(im[..., 3] == 1.0)
        ys = (rows[:, None, None] + sub[None, :, None]).repeat(3, axis=2)  # [P, 3, 3]
        xs = (cols[:, None, None] + sub[None, None, :]).repeat(3, axis=1)
        d = np.stack([(xs - RES / 2) / f, -(ys - RES / 2) / f, -np.ones_like(xs)], -1) @ pose[:3, :3].T
        s_sphere, s_capsule = mirror_geometry(pose, d)
        full = np.all(s_sphere < s_capsule, axis=(1, 2))  # every sub-ray sees the sphere
        d, s = d[full].reshape(-1, 3), s_sphere[full].reshape(-1)
        n = (pose[:3, 3] + s[:, None] * d - sphere.centre) / sphere.radius
        v = d / np.linalg.norm(d, axis=-1, keepdims=True)
        r = v - 2.0 * np.sum(v * n, axis=-1, keepdims=True) * n
        expected = np.clip(0.95 * syn_shading.room_environment(r), 0, 1).reshape(-1, 9, 3).mean(axis=1)
        got = im[rows[full], cols[full], :3]
        np.testing.assert_allclose(got, expected, atol=0.5 / 255 + 1e-6)
        # control: the environment straight along the view direction does not match
        unreflected = np.clip(0.95 * syn_shading.room_environment(v), 0, 1).reshape(-1, 9, 3).mean(axis=1)
        assert np.abs(got - unreflected).mean() > 0.1
        assert expected.std(axis=0).min() > 0.1  # the reflections are textured, not one flat colour
        n_checked += int(full.sum())
    assert n_checked > 100


def test_mirror_colour_changes_strongly_with_the_view() -> None:
    """The same surface point seen from two cameras 40 degrees apart differs clearly (median of the
    largest channel difference 0.41 here, about 0.05 in the glossy scene)."""
    rng = np.random.default_rng(0)
    pts, eyes = visible_surface_points(syn_scenes.build_scene("mirror"), rng, 60)
    assert len(pts) > 30
    c_a, c_b = colours_from_two_views(syn_scenes.build_scene("mirror"), pts, eyes)
    diff = np.abs(c_a - c_b).max(axis=-1)
    assert np.median(diff) > 0.25
    assert np.mean(diff > 0.1) > 0.75


def test_room_environment_is_textured_and_blur_averages_it() -> None:
    # a ring of directions around the horizon, 0.5 degree apart: many sharp changes (tiles, grout)
    az = np.radians(np.arange(0.0, 360.0, 0.5))
    ring = np.stack([np.cos(az), np.sin(az), np.full_like(az, 0.3)], -1)
    ring /= np.linalg.norm(ring, axis=-1, keepdims=True)
    env = syn_shading.room_environment(ring)
    jumps = np.abs(np.diff(env, axis=0)).max(axis=-1) > 0.2
    assert jumps.sum() > 30
    assert len(np.unique(np.round(env, 3), axis=0)) > 10
    # blur: spread 0 is the environment; otherwise a mean over the lobe, whose edges are soft (each
    # of the LOBE_SAMPLES directions crosses an edge of the room on its own)
    blur = syn_shading.blurred_environment(syn_shading.room_environment, ring, 0.0)
    np.testing.assert_allclose(blur, env, atol=1e-12)
    blur = syn_shading.blurred_environment(syn_shading.room_environment, ring, 0.25)
    assert np.abs(np.diff(blur, axis=0)).max() < 0.2 * np.abs(np.diff(env, axis=0)).max()
    assert np.all(blur >= env.min(axis=0) - 1e-12) and np.all(blur <= env.max(axis=0) + 1e-12)


def test_mirror_same_seed_same_bytes(tmp_path: Path) -> None:
    kw = {"resolution": 12, "n_train": 2, "n_val": 1, "n_test": 1}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        syn.generate_scene("mirror", tmp_path / name, seed=seed, **kw)
    a, b, c = (all_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a["train/r_0.png"] != c["train/r_0.png"]


def content_hash(root: Path) -> str:
    """sha256 (16 hex digits) of a dataset's decoded content: poses, 8-bit RGBA, depth and normals."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        meta, _, _, _ = read_frames(root, split)
        h.update(np.float64(meta["camera_angle_x"]).tobytes())
        for f in meta["frames"]:
            h.update(f["file_path"].encode() + np.asarray(f["transform_matrix"], dtype=np.float64).tobytes())
            h.update(iio.imread(root / (f["file_path"][2:] + ".png")).tobytes())
            h.update(np.load(root / f["depth_path"][2:]).tobytes())
            h.update(np.load(root / f["normal_path"][2:]).tobytes())
    return h.hexdigest()[:16]


# Recorded before the mirror scene was added (RES 24, 3/2/8 views, seed 0); a scene changed on
# purpose updates its entry.
GOLDEN = {"diffuse": "bcf6ee30cfa35418", "glossy": "025c50e6b26e69a0", "thin": "6270e760cee2653a"}


@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_existing_scenes_unchanged(scenes: dict[str, Path], kind: str) -> None:
    assert content_hash(scenes[kind]) == GOLDEN[kind]
