"""Orbit videos: frame count, size, colours, GIFs and normals, read back with imageio."""

from __future__ import annotations

import re
import subprocess

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from matplotlib import colormaps

from nerfpipe.video import MACRO_BLOCK, render_orbit, video_frame_size
from nerfpipe.visualize import DEPTH_CMAP

H, W = 20, 30
N = 9
NEAR, FAR = 2.0, 6.0


def _poses(n: int = N) -> np.ndarray:
    poses = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    poses[:, 0, 3] = np.linspace(0.0, 1.0, n)  # frame index encoded in the translation
    return poses


def _render_fn(with_normals: bool, seen: list):
    def fn(c2w):
        seen.append(c2w)
        t = float(c2w[0, 3])
        rgb = np.zeros((H, W, 3), np.float32)
        rgb[..., 0] = t
        rgb[..., 2] = 1.0 - t
        out = {
            "rgb": torch.from_numpy(rgb),  # tensors and arrays are both accepted
            "depth": np.full((H, W), NEAR + (FAR - NEAR) * t, np.float32),
            "acc": np.ones((H, W), np.float32),
        }
        if with_normals:
            n = np.zeros((H, W, 3), np.float32)
            n[..., 1] = 1.0
            out["normals"] = n
        return out

    return fn


def _read_mp4(path) -> tuple[np.ndarray, tuple[int, int], int, float]:
    """Decode an mp4 with imageio's ffmpeg binary: raw frames, (width, height), frame count, seconds.

    (A subprocess rather than imageio_ffmpeg.read_frames, which leaves its pipes open.)
    """
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    res = subprocess.run(
        [exe, "-hide_banner", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    )
    w, h = map(int, re.search(rb"Video: h264.*?, (\d+)x(\d+)", res.stderr).groups())
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    return np.frombuffer(res.stdout, np.uint8), (w, h), n, secs


def test_video_frame_size():
    assert video_frame_size(64, 64) == (4, 256, 256)
    assert video_frame_size(800, 800) == (1, 800, 800)
    assert video_frame_size(20, 30) == (9, 192, 272)  # 180x270 padded to multiples of 16
    for h, w in [(1, 1), (17, 5), (300, 401)]:
        s, vh, vw = video_frame_size(h, w)
        assert vh % MACRO_BLOCK == 0 and vw % MACRO_BLOCK == 0
        assert vh >= h * s and vw >= w * s and max(h, w) * s >= 256


def test_orbit_files_frames_and_size(tmp_path):
    seen: list = []
    meta = render_orbit(_render_fn(True, seen), _poses(), tmp_path, NEAR, FAR, fps=12)
    assert len(seen) == N and all(isinstance(p, torch.Tensor) and p.shape == (4, 4) for p in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "orbit_depth.gif",
        "orbit_normal.gif",
        "orbit_rgb.gif",
        "orbit_rgb.mp4",
    ]  # and no temporary files left behind
    scale, vh, vw = video_frame_size(H, W)
    assert (meta["n_frames"], meta["video_height"], meta["video_width"]) == (N, vh, vw)
    assert meta["has_normals"]

    frames, (w_read, h_read), n_frames, secs = _read_mp4(tmp_path / "orbit_rgb.mp4")
    assert (h_read, w_read) == (vh, vw)
    assert n_frames == N and secs == pytest.approx(N / 12, abs=0.05)
    frames = frames.reshape(-1, vh, vw, 3)
    assert frames.shape == (N, vh, vw, 3)
    # centre pixel follows the rendered colour sequence (H.264 is lossy: loose tolerance)
    centre = frames[:, vh // 2, vw // 2].astype(float)
    t = np.linspace(0.0, 1.0, N)
    np.testing.assert_allclose(centre[:, 0], 255 * t, atol=16)
    np.testing.assert_allclose(centre[:, 2], 255 * (1 - t), atol=16)
    # padding around the upscaled image is white
    top = (vh - H * scale) // 2
    if top > 2:
        assert frames[:, 0].min() > 230

    gif = iio.imread(tmp_path / "orbit_rgb.gif")
    assert gif.shape[:3] == (N, H, W)
    np.testing.assert_allclose(gif[:, 0, 0, 0].astype(float), 255 * t, atol=3)
    depth = iio.imread(tmp_path / "orbit_depth.gif")
    assert depth.shape[:3] == (N, H, W)
    for i in (0, N - 1):
        expect = 255 * np.asarray(colormaps[DEPTH_CMAP](float(t[i]))[:3])
        np.testing.assert_allclose(depth[i, 5, 5, :3].astype(float), expect, atol=6)
    normal = iio.imread(tmp_path / "orbit_normal.gif")
    np.testing.assert_allclose(normal[0, 0, 0, :3].astype(float), [128, 255, 128], atol=2)


def test_orbit_without_normals_and_bad_input(tmp_path):
    meta = render_orbit(_render_fn(False, []), torch.from_numpy(_poses(3)), tmp_path, NEAR, FAR, fps=5)
    assert not meta["has_normals"] and "orbit_normal_gif" not in meta["files"]
    assert not (tmp_path / "orbit_normal.gif").exists()
    assert iio.imread(tmp_path / "orbit_rgb.gif").shape[0] == 3
    with pytest.raises(ValueError, match="poses"):
        render_orbit(_render_fn(False, []), np.eye(4), tmp_path / "x", NEAR, FAR, fps=5)
    with pytest.raises(ValueError, match="fps"):
        render_orbit(_render_fn(False, []), _poses(2), tmp_path / "x", NEAR, FAR, fps=0)
