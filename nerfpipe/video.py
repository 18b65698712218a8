"""Orbit videos: render a camera path and write mp4 + GIF files.

`render_orbit` is independent of the model: it takes a `RenderFn` that maps one
camera-to-world matrix to image buffers and turns the frames into
orbit_rgb.mp4, orbit_rgb.gif, orbit_depth.gif and (when normals exist) orbit_normal.gif.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerfpipe.io import atomic_path, write_bytes
from nerfpipe.progress import track
from nerfpipe.visualize import depth_to_rgb, normals_to_rgb

RenderFn = Callable[[torch.Tensor], dict[str, Any]]
"""Maps c2w [4, 4] to {"rgb" [H,W,3], "depth" [H,W], "acc" [H,W], optionally "normals" [H,W,3]}."""

# H.264 with yuv420p needs even sizes and encoders prefer multiples of 16; frames are
# padded to a multiple of this so no encoder resizes them behind our back.
MACRO_BLOCK = 16
# Small renders (e.g. 64x64) are upscaled by an integer factor (nearest neighbour) until
# their longer side reaches this many pixels, so the mp4 is watchable.
MIN_VIDEO_SIDE = 256
MP4_CODEC = "libx264"
MP4_QUALITY = 8  # imageio-ffmpeg scale 0..10


def video_frame_size(height: int, width: int) -> tuple[int, int, int]:
    """Size of the mp4 frames for renders of `height` x `width`.

    Returns (scale, video_height, video_width): the integer upscale factor and the padded
    size, a multiple of MACRO_BLOCK on both sides.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    scale = max(1, math.ceil(MIN_VIDEO_SIDE / max(height, width)))

    def pad(n: int) -> int:
        return -(-n // MACRO_BLOCK) * MACRO_BLOCK

    return scale, pad(height * scale), pad(width * scale)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _video_frame(frame: np.ndarray, scale: int, vh: int, vw: int) -> np.ndarray:
    """Upscale (nearest) and centre on a white canvas. frame: [H, W, 3] uint8 -> [vh, vw, 3]."""
    if scale > 1:
        frame = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
    h, w = frame.shape[:2]
    canvas = np.full((vh, vw, 3), 255, dtype=np.uint8)
    top, left = (vh - h) // 2, (vw - w) // 2
    canvas[top : top + h, left : left + w] = frame
    return canvas


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def _write_gif(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v3 as iio

    data = iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
    write_bytes(path, data)


def _write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio_ffmpeg

    vh, vw = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        # The temporary name does not end in .mp4, so the container is named explicitly.
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            size=(vw, vh),
            fps=fps,
            codec=MP4_CODEC,
            quality=MP4_QUALITY,
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-f", "mp4", "-movflags", "+faststart"],
        )
        writer.send(None)
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()


def render_orbit(
    render_fn: RenderFn,
    poses: torch.Tensor | np.ndarray,
    out_dir: str | Path,
    near: float,
    far: float,
    fps: float,
    desc: str = "render",
) -> dict[str, Any]:
    """Render every pose of a camera path and write the orbit videos into `out_dir`.

    poses: [n, 4, 4] camera-to-world matrices, one per frame. near, far: depth range of the
    depth colour map. Writes orbit_rgb.mp4 (H.264, frames upscaled/padded as in
    `video_frame_size`), orbit_rgb.gif, orbit_depth.gif and, when the renders contain
    "normals", orbit_normal.gif (GIFs at render resolution). Every file is written atomically.
    Returns {"n_frames", "fps", "height", "width", "video_height", "video_width",
    "has_normals", "files": {name: path}}. Progress (frame i/n, ETA) is reported as `desc`
    (nerfpipe.progress: a bar on a terminal, else a line every --progress-interval seconds).
    """
    poses_t = torch.as_tensor(np.asarray(poses), dtype=torch.float32)
    if poses_t.ndim != 3 or poses_t.shape[1:] != (4, 4) or poses_t.shape[0] < 1:
        raise ValueError(f"poses must be [n, 4, 4] with n >= 1, got shape {tuple(poses_t.shape)}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    out_dir = Path(out_dir)

    rgb_frames: list[np.ndarray] = []
    depth_frames: list[np.ndarray] = []
    normal_frames: list[np.ndarray] = []
    has_normals: bool | None = None
    size: tuple[int, int] | None = None
    for i, c2w in enumerate(track(poses_t, desc, "frame")):
        out = render_fn(c2w)
        rgb = _as_numpy(out["rgb"])
        depth = _as_numpy(out["depth"])
        acc = _as_numpy(out["acc"])
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise ValueError(f"frame {i}: rgb must be [H, W, 3], got shape {rgb.shape}")
        if size is None:
            size = rgb.shape[:2]
            has_normals = "normals" in out and out["normals"] is not None
        elif rgb.shape[:2] != size:
            raise ValueError(f"frame {i}: size {rgb.shape[:2]} differs from frame 0 {size}")
        rgb_frames.append(_to_uint8(rgb))
        depth_frames.append(_to_uint8(depth_to_rgb(depth, near, far, acc)))
        if has_normals:
            if out.get("normals") is None:
                raise ValueError(f"frame {i}: no normals although frame 0 had them")
            normal_frames.append(_to_uint8(normals_to_rgb(_as_numpy(out["normals"]), acc)))

    assert size is not None
    scale, vh, vw = video_frame_size(*size)
    files = {
        "orbit_rgb_mp4": out_dir / "orbit_rgb.mp4",
        "orbit_rgb_gif": out_dir / "orbit_rgb.gif",
        "orbit_depth_gif": out_dir / "orbit_depth.gif",
    }
    _write_mp4(files["orbit_rgb_mp4"], [_video_frame(f, scale, vh, vw) for f in rgb_frames], fps)
    _write_gif(files["orbit_rgb_gif"], rgb_frames, fps)
    _write_gif(files["orbit_depth_gif"], depth_frames, fps)
    if has_normals:
        files["orbit_normal_gif"] = out_dir / "orbit_normal.gif"
        _write_gif(files["orbit_normal_gif"], normal_frames, fps)
    return {
        "n_frames": len(rgb_frames),
        "fps": fps,
        "height": size[0],
        "width": size[1],
        "video_height": vh,
        "video_width": vw,
        "has_normals": bool(has_normals),
        "files": {k: str(v) for k, v in files.items()},
    }
