"""Loader for Blender-format datasets (NeRF-synthetic, Shiny Blender, our embedded scenes).

A scene folder holds `transforms_{split}.json` = {"camera_angle_x": radians, "frames": [{"file_path":
"./train/r_0", "transform_matrix": 4x4 camera-to-world}, ...]}. Images are paired with cameras
through each frame's `file_path` (".png" appended when it has no image extension), never through
the order of a directory listing. Optional per-frame keys `depth_path` / `normal_path` name float32
.npy files with ground-truth camera z-depth [H, W] and world-space normals [H, W, 3] (written by
`nerfpipe.data.synthetic`); a split has ground truth only when every frame names it.
Shiny Blender's normal PNGs (`r_i_normal.png`) and NeRF-synthetic's depth PNGs are not read:
their encodings are dataset-specific and nothing downstream needs them.

Pixel values: 8-bit -> /255; 16-bit grayscale -> /65535; 16-bit colour PNGs are decoded by
Pillow at 8 bits per channel (error < 1/255). Grayscale is replicated to RGB; images without an
alpha channel get alpha 1. RGBA is straight (not premultiplied) alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError

# Rotation part of a transform_matrix must satisfy |R^T R - I| <= this (element-wise).
RIGID_TOL = 1e-3
# Last row of a transform_matrix must be [0, 0, 0, 1] within this.
LAST_ROW_TOL = 1e-6
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class BlenderSplit:
    """One split of a Blender-format scene.

    rgba: [N, H, W, 4] float32, straight alpha in [0, 1]; poses: [N, 4, 4] float32 camera-to-world;
    camera_angle_x: horizontal field of view (radians); file_paths: the frames' file_path entries;
    depth: [N, H, W] float32 z-depth (0 = background) or None; normals: [N, H, W, 3] or None.
    """

    rgba: np.ndarray
    poses: np.ndarray
    camera_angle_x: float
    file_paths: list[str]
    depth: np.ndarray | None = None
    normals: np.ndarray | None = None


def resolve_frame_path(root: Path, file_path: str, add_png: bool = True) -> Path:
    """Path of a frame's file: `root / file_path`, with ".png" appended when it has no image extension."""
    rel = file_path[2:] if file_path.startswith("./") else file_path
    path = root / rel
    if add_png and path.suffix.lower() not in IMAGE_EXTENSIONS:
        path = path.with_name(path.name + ".png")
    return path


def read_image(path: Path) -> np.ndarray:
    """Read an image file as float32 RGBA [H, W, 4] in [0, 1] (straight alpha)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise NerfpipeError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so truncated files fail here
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit (or 32-bit int) grayscale
                grey = np.asarray(img, dtype=np.float64) / 65535.0
                rgba = np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
            elif mode == "F":
                grey = np.asarray(img, dtype=np.float64)
                rgba = np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
            else:
                if mode not in ("RGBA", "RGB", "L", "LA"):
                    img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
                arr = np.asarray(img, dtype=np.float64) / 255.0
                if arr.ndim == 2:  # L
                    arr = np.stack([arr, arr, arr, np.ones_like(arr)], axis=-1)
                elif arr.shape[-1] == 2:  # LA
                    arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
                elif arr.shape[-1] == 3:  # RGB
                    arr = np.concatenate([arr, np.ones_like(arr[..., :1])], axis=-1)
                rgba = arr
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise NerfpipeError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if rgba.ndim != 3 or rgba.shape[-1] != 4:
        raise NerfpipeError(f"{path}: unsupported image layout {rgba.shape}")
    if not np.all(np.isfinite(rgba)):
        raise NerfpipeError(f"{path}: image has non-finite values")
    return np.clip(rgba, 0.0, 1.0).astype(np.float32)


def downscale_rgba(rgba: np.ndarray, factor: int) -> np.ndarray:
    """Area-average an image by an integer factor. rgba: [..., H, W, 4] straight alpha -> [..., H/k, W/k, 4].

    Colour is averaged premultiplied by alpha, then divided by the averaged alpha (0 where alpha is 0),
    so transparent pixels do not bleed their (meaningless) colour into the edges.
    """
    if factor == 1:
        return rgba
    *batch, h, w, _ = rgba.shape
    if h % factor or w % factor:
        raise ValueError(f"downscale factor {factor} does not divide the image size {h}x{w}")
    x = rgba.astype(np.float64).reshape(*batch, h // factor, factor, w // factor, factor, 4)
    alpha = x[..., 3:].mean(axis=(-4, -2))
    premult = (x[..., :3] * x[..., 3:]).mean(axis=(-4, -2))
    colour = np.where(alpha > 0, premult / np.where(alpha > 0, alpha, 1.0), 0.0)
    return np.concatenate([colour, alpha], axis=-1).astype(np.float32)


def downscale_depth(depth: np.ndarray, normals: np.ndarray | None, factor: int
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Downscale ground truth by averaging the foreground (depth > 0) samples of each block.

    depth: [H, W] z-depth, 0 = background; normals: [H, W, 3] or None. A block with no foreground
    sample stays background (0); averaged normals are renormalised.
    """
    if factor == 1:
        return depth, normals
    h, w = depth.shape
    fg = (depth > 0).reshape(h // factor, factor, w // factor, factor)
    count = fg.sum(axis=(1, 3))
    safe = np.maximum(count, 1)
    d = (depth.reshape(h // factor, factor, w // factor, factor) * fg).sum(axis=(1, 3)) / safe
    d = np.where(count > 0, d, 0.0).astype(np.float32)
    if normals is None:
        return d, None
    n = (normals.reshape(h // factor, factor, w // factor, factor, 3) * fg[..., None]).sum(axis=(1, 3))
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where((count[..., None] > 0) & (norm > 0), n / np.where(norm > 0, norm, 1.0), 0.0)
    return d, n.astype(np.float32)


def _check_pose(matrix: object, where: str) -> np.ndarray:
    try:
        pose = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
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
    return resolve_frame_path(root, value, add_png=False)


def _load_gt(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not path.is_file():
        raise NerfpipeError(f"{path}: {what} file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise NerfpipeError(f"{path}: cannot read {what} ({exc})") from exc
    if arr.shape != shape:
        raise NerfpipeError(f"{path}: {what} has shape {arr.shape}, expected {shape} to match the image")
    if not np.all(np.isfinite(arr)):
        raise NerfpipeError(f"{path}: {what} has non-finite values")
    return arr.astype(np.float32)


def load_blender_split(root: Path, split: str, downscale: int = 1) -> BlenderSplit:
    """Load `root/transforms_{split}.json` and its images (optionally area-downscaled by `downscale`)."""
    root = Path(root)
    if not root.is_dir():
        raise NerfpipeError(f"{root}: scene folder not found")
    tf_path = root / f"transforms_{split}.json"
    if not tf_path.is_file():
        raise NerfpipeError(f"{tf_path}: transforms file not found (split {split!r})")
    meta = nio.read_json(tf_path)
    if not isinstance(meta, dict):
        raise NerfpipeError(f"{tf_path}: expected a JSON object at the top level")
    if "camera_angle_x" not in meta:
        raise NerfpipeError(f"{tf_path}: missing key 'camera_angle_x'")
    fov = meta["camera_angle_x"]
    if isinstance(fov, bool) or not isinstance(fov, int | float) or not (0.0 < float(fov) < math.pi):
        raise NerfpipeError(f"{tf_path}: camera_angle_x must be a number in (0, pi) radians, got {fov!r}")
    if "frames" not in meta:
        raise NerfpipeError(f"{tf_path}: missing key 'frames'")
    frames = meta["frames"]
    if not isinstance(frames, list):
        raise NerfpipeError(f"{tf_path}: 'frames' must be a list")
    if not frames:
        raise NerfpipeError(f"{tf_path}: 'frames' is empty (empty split {split!r})")
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise NerfpipeError(f"{tf_path}: downscale must be an integer >= 1, got {downscale!r}")

    images, poses, file_paths = [], [], []
    depths: list[np.ndarray] = []
    normals: list[np.ndarray] = []
    has_depth = all(isinstance(f, dict) and "depth_path" in f for f in frames)
    has_normals = has_depth and all("normal_path" in f for f in frames)
    size: tuple[int, int] | None = None
    first_image: Path | None = None
    for i, frame in enumerate(frames):
        where = f"{tf_path} frame {i}"
        if not isinstance(frame, dict):
            raise NerfpipeError(f"{where}: expected an object with 'file_path' and 'transform_matrix'")
        fp = frame.get("file_path")
        if not isinstance(fp, str) or not fp:
            raise NerfpipeError(f"{where}: missing or empty 'file_path'")
        if "transform_matrix" not in frame:
            raise NerfpipeError(f"{where}: missing 'transform_matrix'")
        pose = _check_pose(frame["transform_matrix"], f"{where} ({fp})")
        img_path = resolve_frame_path(root, fp)
        if not img_path.is_file():
            raise NerfpipeError(f"{img_path}: image of {where} (file_path {fp!r}) not found")
        rgba = read_image(img_path)
        h, w = rgba.shape[:2]
        if size is None:
            size, first_image = (h, w), img_path
            if h % downscale or w % downscale:
                raise NerfpipeError(f"{img_path}: downscale factor {downscale} does not divide the "
                                    f"image size {h}x{w}")
        elif (h, w) != size:
            raise NerfpipeError(f"{img_path}: image is {h}x{w} but {first_image} is {size[0]}x{size[1]} "
                                f"(all images of a split must have one size)")
        images.append(downscale_rgba(rgba, downscale))
        poses.append(pose)
        file_paths.append(fp)
        if has_depth:
            d = _load_gt(_gt_path(root, frame, "depth_path", where), (h, w), "depth")
            n = None
            if has_normals:
                n = _load_gt(_gt_path(root, frame, "normal_path", where), (h, w, 3), "normals")
            d, n = downscale_depth(d, n, downscale)
            depths.append(d)
            if n is not None:
                normals.append(n)
    return BlenderSplit(
        rgba=np.stack(images).astype(np.float32),
        poses=np.stack(poses).astype(np.float32),
        camera_angle_x=float(fov),
        file_paths=file_paths,
        depth=np.stack(depths) if has_depth else None,
        normals=np.stack(normals) if has_normals else None,
    )
