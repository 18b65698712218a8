"""Reading and checking a Blender-format `transforms_{split}.json`, before any image is decoded.

The file is {"camera_angle_x": radians, "frames": [{"file_path": "./train/r_0", "transform_matrix":
4x4 camera-to-world, optional "depth_path" / "normal_path"}, ...]}. This module checks its size,
its JSON, its top-level keys, and every frame: its paths (lexically inside the scene folder, see
`check_relative_path`) and its pose (a rigid, finite 4x4 matrix). The result is a list of `Frame`s
naming the files of each frame; nothing here reads an image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from nerfpipe import io as nio
from nerfpipe.data.checks import format_bytes, is_file, os_reason, short_repr
from nerfpipe.errors import NerfpipeError

# Rotation part of a transform_matrix must satisfy |R^T R - I| <= this (element-wise).
RIGID_TOL = 1e-3
# Last row of a transform_matrix must be [0, 0, 0, 1] within this.
LAST_ROW_TOL = 1e-6
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Largest transforms_*.json that is parsed.
MAX_TRANSFORMS_BYTES = 256 * 2**20


def check_relative_path(file_path: str, where: str, key: str = "file_path") -> str:
    """Check a dataset path lexically; return it normalised (no "." components).

    It must be relative, free of `..` components and control characters, and name something
    below the scene folder (not the folder itself). Symlinks are not resolved: a link inside the
    dataset may point elsewhere (git-annex / DVC checkouts).
    """
    quoted = short_repr(file_path)
    if any(ord(c) < 32 or ord(c) == 127 for c in file_path):
        raise NerfpipeError(f"{where}: {key} {quoted} contains a control character")
    try:
        file_path.encode("utf-8")
    except UnicodeEncodeError:
        raise NerfpipeError(f"{where}: {key} {quoted} is not valid Unicode (lone surrogate)") from None
    pure = PurePosixPath(file_path)
    if pure.is_absolute():
        raise NerfpipeError(f"{where}: {key} {quoted} is an absolute path; paths must be relative to the "
                            "scene folder")
    if ".." in pure.parts:
        raise NerfpipeError(f"{where}: {key} {quoted} has a '..' component; paths must stay inside the "
                            "scene folder")
    if not pure.parts:
        raise NerfpipeError(f"{where}: {key} {quoted} names the scene folder itself, not a file in it")
    return str(pure)


def resolve_frame_path(root: Path, file_path: str, add_png: bool = True, where: str | None = None,
                       key: str = "file_path") -> Path:
    """Path of a frame's file: `root / file_path`, with ".png" appended when it has no image extension.

    `file_path` must stay inside `root` (see `check_relative_path`); `where` names the frame in
    the error message.
    """
    rel = check_relative_path(file_path, where or str(root), key)
    path = root / rel
    if add_png and path.suffix.lower() not in IMAGE_EXTENSIONS:
        path = path.with_name(path.name + ".png")
    return path


def normal_png_path(image: Path) -> Path:
    """Shiny Blender's ground-truth normals of image `X.png`: `X_normal.png` beside it."""
    return image.with_name(image.stem + "_normal.png")


def _check_pose(matrix: object, where: str) -> np.ndarray:
    """A frame's transform_matrix as a float64 [4, 4] camera-to-world matrix, checked rigid and finite."""
    try:
        pose = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise NerfpipeError(f"{where}: transform_matrix is not a numeric 4x4 matrix") from exc
    if pose.shape != (4, 4):
        raise NerfpipeError(f"{where}: transform_matrix has shape {pose.shape}, expected (4, 4)")
    if not np.all(np.isfinite(pose)):
        raise NerfpipeError(f"{where}: transform_matrix has non-finite entries")
    if np.max(np.abs(pose[3] - np.array([0.0, 0.0, 0.0, 1.0]))) > LAST_ROW_TOL:
        raise NerfpipeError(f"{where}: transform_matrix last row is {pose[3].tolist()}, "
                            "expected [0, 0, 0, 1]")
    rot = pose[:3, :3]
    err = float(np.max(np.abs(rot.T @ rot - np.eye(3))))
    if err > RIGID_TOL:
        raise NerfpipeError(f"{where}: transform_matrix is not rigid (rotation part not orthonormal, "
                            f"max |R^T R - I| = {err:.3g} > {RIGID_TOL})")
    if np.linalg.det(rot) < 0:
        raise NerfpipeError(f"{where}: transform_matrix is a reflection (det of rotation part < 0)")
    return pose


def _gt_path(root: Path, frame: dict, key: str, where: str) -> Path:
    value = frame[key]
    if not isinstance(value, str) or not value:
        raise NerfpipeError(f"{where}: {key!r} must be a non-empty path string")
    return resolve_frame_path(root, value, add_png=False, where=where, key=key)


def _read_json(tf_path: Path) -> Any:
    """The parsed JSON of a transforms file, refused above MAX_TRANSFORMS_BYTES."""
    try:
        size = tf_path.stat().st_size
    except OSError as exc:
        raise NerfpipeError(f"{tf_path}: cannot read ({os_reason(exc)})") from exc
    if size > MAX_TRANSFORMS_BYTES:
        raise NerfpipeError(f"{tf_path}: transforms file is {format_bytes(size)}, more than "
                            f"MAX_TRANSFORMS_BYTES ({format_bytes(MAX_TRANSFORMS_BYTES)})")
    try:
        return nio.read_json(tf_path)
    except RecursionError as exc:
        raise NerfpipeError(f"{tf_path}: not valid JSON (nested too deeply)") from exc
    except ValueError as exc:  # e.g. an integer beyond Python's int/str conversion limit
        raise NerfpipeError(f"{tf_path}: not valid JSON ({' '.join(str(exc).split())})") from exc
    except OSError as exc:
        raise NerfpipeError(f"{tf_path}: cannot read ({os_reason(exc)})") from exc


def read_transforms(tf_path: Path, split: str) -> tuple[float, list]:
    """Read `tf_path` (the transforms file of `split`): (camera_angle_x in radians, its non-empty
    "frames" list, each frame still unchecked; see `check_frames`)."""
    if not is_file(tf_path):
        raise NerfpipeError(f"{tf_path}: transforms file not found (split {split!r})")
    meta = _read_json(tf_path)
    if not isinstance(meta, dict):
        raise NerfpipeError(f"{tf_path}: expected a JSON object at the top level")
    if "camera_angle_x" not in meta:
        raise NerfpipeError(f"{tf_path}: missing key 'camera_angle_x'")
    fov = meta["camera_angle_x"]
    try:
        fov_ok = not isinstance(fov, bool) and isinstance(fov, int | float) and 0.0 < float(fov) < math.pi
    except OverflowError:
        fov_ok = False
    if not fov_ok:
        raise NerfpipeError(f"{tf_path}: camera_angle_x must be a number in (0, pi) radians, "
                            f"got {short_repr(fov)}")
    if "frames" not in meta:
        raise NerfpipeError(f"{tf_path}: missing key 'frames'")
    frames = meta["frames"]
    if not isinstance(frames, list):
        raise NerfpipeError(f"{tf_path}: 'frames' must be a list")
    if not frames:
        raise NerfpipeError(f"{tf_path}: 'frames' is empty (empty split {split!r})")
    return float(fov), frames


@dataclass
class Frame:
    """One checked frame: its file_path entry, its files and its pose.

    pose: [4, 4] float64 camera-to-world; depth / normals: the ground-truth files (None when the
    split has none); normals_png: the normals are Shiny Blender's `X_normal.png` (else a float32 .npy).
    """

    file_path: str
    image: Path
    pose: np.ndarray
    depth: Path | None
    normals: Path | None
    normals_png: bool = False


def check_frames(root: Path, tf_path: Path, frames: list) -> tuple[list[Frame], bool, bool]:
    """Check every frame's keys, paths and pose before any image is decoded.

    Returns the frames, and whether the split has ground-truth depth and normals: depth when every
    frame names a `depth_path`; normals when every frame names a `normal_path` as well, or else,
    when no frame names one, when every image `X.png` has a Shiny Blender `X_normal.png` beside it.
    """
    has_depth = all(isinstance(f, dict) and "depth_path" in f for f in frames)
    has_normals = has_depth and all("normal_path" in f for f in frames)
    normals_png = not any(isinstance(f, dict) and "normal_path" in f for f in frames)
    checked = []
    for i, frame in enumerate(frames):
        where = f"{tf_path} frame {i}"
        if not isinstance(frame, dict):
            raise NerfpipeError(f"{where}: expected an object with 'file_path' and 'transform_matrix'")
        fp = frame.get("file_path")
        if not isinstance(fp, str) or not fp:
            raise NerfpipeError(f"{where}: missing or empty 'file_path'")
        image = resolve_frame_path(root, fp, where=where)
        if "transform_matrix" not in frame:
            raise NerfpipeError(f"{where}: missing 'transform_matrix'")
        pose = _check_pose(frame["transform_matrix"], f"{where} ({fp})")
        depth = _gt_path(root, frame, "depth_path", where) if has_depth else None
        normals = _gt_path(root, frame, "normal_path", where) if has_normals else None
        checked.append(Frame(fp, image, pose, depth, normals))
    if not has_normals and normals_png:
        pngs = [normal_png_path(f.image) for f in checked]
        if all(is_file(p) for p in pngs):
            for f, png in zip(checked, pngs, strict=True):
                f.normals, f.normals_png = png, True
            has_normals = True
    return checked, has_depth, has_normals
