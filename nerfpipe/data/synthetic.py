"""Embedded synthetic scenes written as Blender-format datasets: the cameras of each split, the
memory check, and the files.

The scenes themselves are built by `synthetic_scenes` (from the primitives of
`synthetic_primitives`), shaded by `synthetic_shading` and rendered by `synthetic_trace` (a small
deterministic numpy ray tracer, SUPERSAMPLE^2 rays per pixel, straight alpha, ground-truth depth
and normals at the pixel centre). The dataset layout follows NeRF-synthetic:
`transforms_{train,val,test}.json` with `camera_angle_x` and `frames`, each frame with `file_path`
("./train/r_0", no extension), `transform_matrix`, and the extra keys `depth_path` / `normal_path`
naming float32 .npy files next to the PNG.

Cameras sit on the upper hemisphere at radius 4 looking at the origin (world up +z): train and
val views are independent seeded draws, test views an orbit with varying elevation and a seeded
azimuth offset; no val/test camera coincides with a train camera. Same seed, same bytes.

Before anything is allocated, `generate_scene` estimates the memory the data stage needs for the
scene (`estimate_scene_bytes`: tracing one view, then the decoded dataset) and refuses settings
above MAX_SCENE_BYTES (environment override NERFPIPE_MAX_SCENE_BYTES). A failed write (disk
full, permissions) is reported as a NerfpipeError naming the file.
"""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import numpy as np

from nerfpipe import io as nio
from nerfpipe.cameras import focal_from_fov, look_at
from nerfpipe.data.checks import byte_limit, format_bytes, short_repr
from nerfpipe.data.synthetic_primitives import Array
from nerfpipe.data.synthetic_scenes import SCENES as SCENES  # the scene names, re-exported
from nerfpipe.data.synthetic_scenes import build_scene, check_scene_kind
from nerfpipe.data.synthetic_trace import SUPERSAMPLE, render_view
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import make_temp_dir, replace_dir

CAMERA_ANGLE_X = 0.6911112  # NeRF-synthetic's horizontal field of view (radians)
CAMERA_RADIUS = 4.0
# Train/val cameras: uniform on the band z/r in [MIN_Z, MAX_Z] of the upper hemisphere
# (avoid grazing horizon views and the look-at singularity at the zenith).
CAMERA_MIN_Z, CAMERA_MAX_Z = 0.05, 0.95
# Two cameras closer than this (world units) count as the same camera.
SAME_CAMERA_TOL = 1e-3
# Memory limit of a generated scene (see estimate_scene_bytes); NERFPIPE_MAX_SCENE_BYTES overrides it.
MAX_SCENE_BYTES = 4 * 2**30
MAX_SCENE_BYTES_ENV = "NERFPIPE_MAX_SCENE_BYTES"
# Peak bytes per traced ray of `render_view` (measured with tracemalloc: 190-235 for the four
# scenes at 32-128 pixels, rounded up).
TRACE_BYTES_PER_RAY = 256
# Bytes per pixel of a decoded view: rgba (4) + depth (1) + normals (3) float32.
DECODED_BYTES_PER_PIXEL = (4 + 1 + 3) * 4


# ----------------------------------------------------------------------------- cameras


def _random_eyes(rng: np.random.Generator, n: int, radius: float) -> Array:
    """n camera positions [n, 3], uniform in area on the band CAMERA_MIN_Z..MAX_Z of the sphere."""
    z = rng.uniform(CAMERA_MIN_Z, CAMERA_MAX_Z, size=n)  # uniform in area on the band
    phi = rng.uniform(0.0, 2 * math.pi, size=n)
    rho = np.sqrt(1.0 - z * z)
    return radius * np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=-1)


def _orbit_eyes(rng: np.random.Generator, n: int, radius: float) -> Array:
    """n camera positions [n, 3] on an orbit with varying elevation and a random azimuth offset."""
    offset = rng.uniform(0.0, 2 * math.pi)
    az = offset + 2 * math.pi * np.arange(n) / max(n, 1)
    el = np.radians(35.0 + 15.0 * np.sin(2.0 * az))
    return radius * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def camera_eyes(n_train: int, n_val: int, n_test: int, seed: int,
                radius: float = CAMERA_RADIUS) -> dict[str, Array]:
    """Camera positions [n, 3] per split: train/val random on the upper hemisphere, test an orbit."""
    eyes = {"train": _random_eyes(np.random.default_rng([seed, 0]), n_train, radius),
            "val": _random_eyes(np.random.default_rng([seed, 1]), n_val, radius),
            "test": _orbit_eyes(np.random.default_rng([seed, 2]), n_test, radius)}
    for split in ("val", "test"):
        if len(eyes[split]) and len(eyes["train"]):
            gap = np.linalg.norm(eyes[split][:, None] - eyes["train"][None], axis=-1).min()
            if gap < SAME_CAMERA_TOL:
                raise RuntimeError(f"a {split} camera coincides with a train camera (seed {seed})")
    return eyes


# ----------------------------------------------------------------------------- dataset


def _png_bytes(rgba: Array) -> bytes:
    """rgba [H, W, 4] in [0, 1] as an 8-bit RGBA PNG file."""
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", (np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), extension=".png")


def _npy_bytes(array: Array) -> bytes:
    """An array as the bytes of a .npy file."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def estimate_scene_bytes(resolution: int, n_train: int, n_val: int, n_test: int) -> tuple[int, int]:
    """Peak memory of the data stage for a generated scene: (tracing one view, the decoded dataset).

    `render_view` traces resolution^2 x SUPERSAMPLE^2 rays at once (TRACE_BYTES_PER_RAY each);
    afterwards the data stage holds every split decoded (DECODED_BYTES_PER_PIXEL per pixel).
    The two phases do not overlap, so the peak is the larger of the two.
    """
    pixels = int(resolution) ** 2
    trace = pixels * SUPERSAMPLE**2 * TRACE_BYTES_PER_RAY
    dataset = (int(n_train) + int(n_val) + int(n_test)) * pixels * DECODED_BYTES_PER_PIXEL
    return trace, dataset


def _check_scene_size(kind: str, resolution: int, n_train: int, n_val: int, n_test: int) -> None:
    trace, dataset = estimate_scene_bytes(resolution, n_train, n_val, n_test)
    limit = byte_limit(MAX_SCENE_BYTES_ENV, MAX_SCENE_BYTES)
    if max(trace, dataset) <= limit:
        return
    res, views = short_repr(resolution, 20), short_repr(int(n_train) + int(n_val) + int(n_test), 20)
    if trace >= dataset:
        need = (f"resolution: {res} needs about {format_bytes(trace)} to trace one view "
                f"({res}^2 pixels x {SUPERSAMPLE**2} rays x {TRACE_BYTES_PER_RAY} bytes)")
    else:
        counts = ", ".join(f"{k} {short_repr(v, 20)}" for k, v in
                           (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)))
        need = (f"resolution: {res} with {views} views ({counts}) needs about {format_bytes(dataset)} "
                "for the decoded dataset")
    raise NerfpipeError(f"synthetic scene {kind!r}: {need}, more than the limit of {format_bytes(limit)} "
                        f"(MAX_SCENE_BYTES; set {MAX_SCENE_BYTES_ENV} to change it)")


def _write_failed(path: Path, exc: OSError) -> NerfpipeError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return NerfpipeError(f"{path}: cannot write the generated scene ({reason})")


def _write_file(tmp: Path, out_dir: Path, rel: str, data: bytes) -> None:
    """Write tmp/rel; an OSError (disk full, ...) is reported under the final name out_dir/rel."""
    try:
        (tmp / rel).write_bytes(data)
    except OSError as exc:
        raise _write_failed(out_dir / rel, exc) from exc


def generate_scene(kind: str, out_dir: Path, resolution: int = 64, n_train: int = 100, n_val: int = 10,
                   n_test: int = 20, seed: int = 0) -> None:
    """Render scene `kind` and write it to `out_dir` as a Blender-format dataset.

    Writes transforms_{train,val,test}.json, {split}/r_{i}.png (RGBA 8-bit, straight alpha),
    {split}/r_{i}_depth.npy [H, W] float32 z-depth and {split}/r_{i}_normal.npy [H, W, 3] float32
    world-space normals. Deterministic: the same arguments give the same bytes.

    The dataset is built in a temporary sibling folder and renamed onto `out_dir` (replacing an
    older one) when complete. Its hundreds of small files are written without a per-file fsync
    (which would cost more than the rendering); the folder as a whole is the atomic unit.
    Settings whose estimated memory (`estimate_scene_bytes`) exceeds MAX_SCENE_BYTES are refused
    before anything is allocated or written.
    """
    check_scene_kind(kind)
    if int(resolution) < 1:
        raise NerfpipeError(f"synthetic scene {kind!r}: resolution must be >= 1, got {resolution}")
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if int(n) < 1:
            raise NerfpipeError(f"synthetic scene {kind!r}: {name} must be >= 1, got {n}")
    _check_scene_size(kind, int(resolution), int(n_train), int(n_val), int(n_test))
    out_dir = Path(out_dir)
    scene = build_scene(kind)
    height = width = int(resolution)
    focal = focal_from_fov(width, CAMERA_ANGLE_X)
    eyes = camera_eyes(int(n_train), int(n_val), int(n_test), int(seed))
    try:
        tmp = make_temp_dir(out_dir)
    except OSError as exc:
        raise _write_failed(out_dir, exc) from exc
    try:
        for split, split_eyes in eyes.items():
            try:
                (tmp / split).mkdir()
            except OSError as exc:
                raise _write_failed(out_dir / split, exc) from exc
            frames = []
            for i, eye in enumerate(split_eyes):
                c2w = look_at(eye)
                rgba, depth, normals = render_view(scene, c2w, height, width, focal)
                stem = f"{split}/r_{i}"
                _write_file(tmp, out_dir, f"{stem}.png", _png_bytes(rgba))
                _write_file(tmp, out_dir, f"{stem}_depth.npy", _npy_bytes(depth.astype(np.float32)))
                _write_file(tmp, out_dir, f"{stem}_normal.npy", _npy_bytes(normals.astype(np.float32)))
                frames.append({"file_path": f"./{stem}", "transform_matrix": c2w.tolist(),
                               "depth_path": f"./{stem}_depth.npy", "normal_path": f"./{stem}_normal.npy"})
            name = f"transforms_{split}.json"
            try:
                nio.write_json(tmp / name, {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames})
            except OSError as exc:
                raise _write_failed(out_dir / name, exc) from exc
        try:
            replace_dir(tmp, out_dir)
        except OSError as exc:
            raise _write_failed(out_dir, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
