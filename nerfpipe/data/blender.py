"""Loader for Blender-format datasets (NeRF-synthetic, Shiny Blender, our embedded scenes).

A scene folder holds `transforms_{split}.json` = {"camera_angle_x": radians, "frames": [{"file_path":
"./train/r_0", "transform_matrix": 4x4 camera-to-world}, ...]}. Images are paired with cameras
through each frame's `file_path` (".png" appended when it has no image extension), never through
the order of a directory listing. Optional per-frame keys `depth_path` / `normal_path` name float32
.npy files with ground-truth camera z-depth [H, W] and world-space normals [H, W, 3] (written by
`nerfpipe.data.synthetic`); a split has ground truth only when every frame names it.
Shiny Blender's ground-truth normals are read too: when no frame names a `normal_path` and every
frame's image `X.png` has a sibling `X_normal.png`, its RGB decodes to world-space normals
`n = rgb * 2 - 1` (8 bits, as multinerf reads them), set to 0 where the frame's alpha is 0 (background);
downscaling averages them over the foreground pixels of each block and renormalises.
NeRF-synthetic's depth and normal PNGs (`r_i_depth_0000.png`, `r_i_normal_0000.png`) are not read:
their encodings are dataset-specific.

Pixel values: 8-bit -> /255; 16-bit grayscale -> /65535; 16-bit colour PNGs are decoded by
Pillow at 8 bits per channel (error < 1/255). Grayscale is replicated to RGB; images without an
alpha channel get alpha 1. RGBA is straight (not premultiplied) alpha.

Hostile input is refused with a one-line NerfpipeError before any large allocation:
- every `file_path` / `depth_path` / `normal_path` must name a file inside the scene folder,
  checked lexically (relative, no `..` component, not the folder itself, no control characters);
  symlinks inside the dataset may point anywhere (git-annex / DVC checkouts), so the target of a
  link is not resolved;
- an image whose header declares more than MAX_IMAGE_PIXELS pixels is refused before decoding;
  a .npy ground-truth file whose header declares another shape is refused before loading;
- the decoded arrays of a split (N x H x W x 4 x 4 bytes, plus ground truth) must fit in
  MAX_SPLIT_BYTES (environment override NERFPIPE_MAX_SPLIT_BYTES); they are allocated once.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError

# Rotation part of a transform_matrix must satisfy |R^T R - I| <= this (element-wise).
RIGID_TOL = 1e-3
# Last row of a transform_matrix must be [0, 0, 0, 1] within this.
LAST_ROW_TOL = 1e-6
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Largest image (width x height) that is decoded; the header is checked before decoding.
MAX_IMAGE_PIXELS = 64_000_000  # 64 megapixels, e.g. 8000x8000
# Largest decoded split (rgba + ground truth, float32); NERFPIPE_MAX_SPLIT_BYTES overrides it.
MAX_SPLIT_BYTES = 16 * 2**30
MAX_SPLIT_BYTES_ENV = "NERFPIPE_MAX_SPLIT_BYTES"
# Largest transforms_*.json that is parsed.
MAX_TRANSFORMS_BYTES = 256 * 2**20

# Pillow's own decompression-bomb limit is a process-wide setting; it is lifted only while a
# header is read (the stricter MAX_IMAGE_PIXELS check follows), under this lock.
_PIL_LIMIT_LOCK = threading.Lock()


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


def format_bytes(n: int | float) -> str:
    """A byte count for messages: "12.3 GiB", "4.0 MiB", "512 bytes"."""
    if n >= 2**1000:  # beyond float range: give the order of magnitude
        return f"2^{int(n).bit_length() - 1} bytes"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 2**60 else f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def byte_limit(env: str, default: int) -> int:
    """A memory limit in bytes: the environment variable `env` when set, else `default`."""
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise NerfpipeError(f"environment variable {env}={raw!r}: expected a positive number of bytes")
    return int(value)


def short_repr(value: Any, limit: int = 200) -> str:
    """repr() of at most `limit` characters (the middle elided), for values quoted in one-line messages."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    head = (limit - 3) // 2
    return text[:head] + "..." + text[len(text) - (limit - 3 - head):]


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _is_file(path: Path) -> bool:
    """Path.is_file that answers False (rather than raising) for names the OS refuses (too long, ...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


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


def _pil_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image, UnidentifiedImageError

    # Pillow's decoders raise a zoo of types on corrupt files; all of them mean "cannot read".
    return (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
            KeyError, TypeError, ZeroDivisionError, Image.DecompressionBombError)


def _open_image(path: Path) -> Any:
    """Image.open (header only, nothing decoded) with the declared size checked against MAX_IMAGE_PIXELS."""
    from PIL import Image

    if not _is_file(path):
        raise NerfpipeError(f"{path}: image not found")
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # the stricter check below replaces Pillow's
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(path)
        except _pil_errors() as exc:
            raise NerfpipeError(f"{path}: cannot read image ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())})") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS or w < 1 or h < 1:
        img.close()
        if w < 1 or h < 1:
            raise NerfpipeError(f"{path}: image header declares an empty {w}x{h} image")
        raise NerfpipeError(f"{path}: image header declares {w}x{h} ({w * h / 1e6:.1f} megapixels), more "
                            f"than MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS / 1e6:g} megapixels); refused before "
                            "decoding")
    return img


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from an image file's header, without decoding it (MAX_IMAGE_PIXELS checked)."""
    img = _open_image(path)
    try:
        w, h = img.size
    finally:
        img.close()
    return h, w


def read_image(path: Path) -> np.ndarray:
    """Read an image file as float32 RGBA [H, W, 4] in [0, 1] (straight alpha).

    The header is read first: an image declaring more than MAX_IMAGE_PIXELS pixels is refused
    before anything is decoded. Arithmetic is float32 (exactly the float64 result rounded, for
    8- and 16-bit values).
    """
    with _open_image(path) as img:
        try:
            img.load()  # decode now, so truncated files fail here
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit (or 32-bit int) grayscale
                grey = np.asarray(img, dtype=np.float32) / np.float32(65535.0)
                rgba = np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
            elif mode == "F":
                grey = np.asarray(img, dtype=np.float32)
                rgba = np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
            else:
                if mode not in ("RGBA", "RGB", "L", "LA"):
                    img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
                arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
                if arr.ndim == 2:  # L
                    arr = np.stack([arr, arr, arr, np.ones_like(arr)], axis=-1)
                elif arr.shape[-1] == 2:  # LA
                    arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
                elif arr.shape[-1] == 3:  # RGB
                    arr = np.concatenate([arr, np.ones_like(arr[..., :1])], axis=-1)
                rgba = arr
        except _pil_errors() as exc:
            raise NerfpipeError(f"{path}: cannot read image ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())})") from exc
    if rgba.ndim != 3 or rgba.shape[-1] != 4:
        raise NerfpipeError(f"{path}: unsupported image layout {rgba.shape}")
    if not np.all(np.isfinite(rgba)):
        raise NerfpipeError(f"{path}: image has non-finite values")
    return np.clip(rgba, 0.0, 1.0, out=rgba)


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


def _npy_shape(path: Path, what: str) -> tuple[int, ...]:
    """The shape a .npy file's header declares (nothing else is read)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, SyntaxError, EOFError, TypeError) as exc:
        raise NerfpipeError(f"{path}: cannot read {what} ({' '.join(str(exc).split())})") from exc
    return tuple(shape)


def _load_gt(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not _is_file(path):
        raise NerfpipeError(f"{path}: {what} file not found")
    declared = _npy_shape(path, what)  # before loading: a header may declare any size
    if declared != shape:
        raise NerfpipeError(f"{path}: {what} has shape {short_repr(declared)}, expected {shape} to match "
                            "the image")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise NerfpipeError(f"{path}: cannot read {what} ({' '.join(str(exc).split())})") from exc
    if arr.shape != shape:
        raise NerfpipeError(f"{path}: {what} has shape {arr.shape}, expected {shape} to match the image")
    if not np.all(np.isfinite(arr)):
        raise NerfpipeError(f"{path}: {what} has non-finite values")
    return arr.astype(np.float32)


def _read_transforms(tf_path: Path) -> Any:
    try:
        size = tf_path.stat().st_size
    except OSError as exc:
        raise NerfpipeError(f"{tf_path}: cannot read ({_os_reason(exc)})") from exc
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
        raise NerfpipeError(f"{tf_path}: cannot read ({_os_reason(exc)})") from exc


@dataclass
class _Frame:
    file_path: str
    image: Path
    pose: np.ndarray
    depth: Path | None
    normals: Path | None
    normals_png: bool = False


def _check_frames(root: Path, tf_path: Path, frames: list) -> tuple[list[_Frame], bool, bool]:
    """Check every frame's keys, paths and pose before any image is decoded."""
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
        checked.append(_Frame(fp, image, pose, depth, normals))
    if not has_normals and normals_png:
        pngs = [normal_png_path(f.image) for f in checked]
        if all(_is_file(p) for p in pngs):
            for f, png in zip(checked, pngs, strict=True):
                f.normals, f.normals_png = png, True
            has_normals = True
    return checked, has_depth, has_normals


def normal_png_path(image: Path) -> Path:
    """Shiny Blender's ground-truth normals of image `X.png`: `X_normal.png` beside it."""
    return image.with_name(image.stem + "_normal.png")


def read_normal_png(path: Path, alpha: np.ndarray) -> np.ndarray:
    """World-space normals [H, W, 3] from a normal PNG: `rgb * 2 - 1`, 0 where `alpha` [H, W] is 0."""
    rgb = read_image(path)[..., :3]
    if rgb.shape[:2] != alpha.shape:
        raise NerfpipeError(f"{path}: normal image is {rgb.shape[0]}x{rgb.shape[1]} but its frame's image is "
                            f"{alpha.shape[0]}x{alpha.shape[1]}")
    normals = rgb * np.float32(2.0) - np.float32(1.0)
    return np.where((alpha > 0)[..., None], normals, np.float32(0.0)).astype(np.float32)


def load_blender_split(root: Path, split: str, downscale: int = 1) -> BlenderSplit:
    """Load `root/transforms_{split}.json` and its images (optionally area-downscaled by `downscale`).

    All frames are checked (keys, paths, poses) before any image is decoded; the first image's
    header fixes the size, and the split's arrays are allocated once, after the MAX_SPLIT_BYTES
    check.
    """
    root = Path(root)
    try:
        is_dir = root.is_dir()
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        raise NerfpipeError(f"{root}: scene folder not found")
    tf_path = root / f"transforms_{split}.json"
    if not _is_file(tf_path):
        raise NerfpipeError(f"{tf_path}: transforms file not found (split {split!r})")
    meta = _read_transforms(tf_path)
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
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise NerfpipeError(f"{tf_path}: downscale must be an integer >= 1, got {downscale!r}")
    checked, has_depth, has_normals = _check_frames(root, tf_path, frames)

    n = len(checked)
    rgba = poses = depths = normals = None
    size: tuple[int, int] | None = None
    first_image: Path | None = None
    for i, frame in enumerate(checked):
        where = f"{tf_path} frame {i}"
        img_path = frame.image
        if not _is_file(img_path):
            raise NerfpipeError(f"{img_path}: image of {where} (file_path {short_repr(frame.file_path)}) "
                                "not found")
        h, w = image_size(img_path)  # header only
        if size is None:
            size, first_image = (h, w), img_path
            if h % downscale or w % downscale:
                raise NerfpipeError(f"{img_path}: downscale factor {downscale} does not divide the "
                                    f"image size {h}x{w}")
            hd, wd = h // downscale, w // downscale
            floats = 4 + (1 if has_depth else 0) + (3 if has_normals else 0)
            need = n * hd * wd * floats * 4
            limit = byte_limit(MAX_SPLIT_BYTES_ENV, MAX_SPLIT_BYTES)
            if need > limit:
                gt = " incl. depth/normals" if has_depth else ""
                raise NerfpipeError(
                    f"{tf_path}: split {split!r} has {n} frames of {w}x{h} (downscale {downscale}); decoding "
                    f"them needs about {format_bytes(need)} ({n} x {hd} x {wd} x {floats} floats x 4 bytes"
                    f"{gt}), more than the limit of {format_bytes(limit)} (MAX_SPLIT_BYTES; set "
                    f"{MAX_SPLIT_BYTES_ENV} to change it)")
            rgba = np.empty((n, hd, wd, 4), np.float32)
            poses = np.empty((n, 4, 4), np.float32)
            depths = np.empty((n, hd, wd), np.float32) if has_depth else None
            normals = np.empty((n, hd, wd, 3), np.float32) if has_normals else None
        elif (h, w) != size:
            raise NerfpipeError(f"{img_path}: image is {h}x{w} but {first_image} is {size[0]}x{size[1]} "
                                f"(all images of a split must have one size)")
        image = read_image(img_path)
        if image.shape[:2] != (h, w):
            raise NerfpipeError(f"{img_path}: decoded image is {image.shape[0]}x{image.shape[1]} but its "
                                f"header declares {h}x{w}")
        rgba[i] = downscale_rgba(image, downscale)
        alpha = image[..., 3].copy() if frame.normals_png else None
        del image
        poses[i] = frame.pose
        if frame.normals_png:
            # Averaged over each block's foreground (alpha > 0) pixels, like the depth-masked normals.
            _, normals[i] = downscale_depth((alpha > 0).astype(np.float32),
                                            read_normal_png(frame.normals, alpha), downscale)
        if has_depth:
            d = _load_gt(frame.depth, (h, w), "depth")
            nrm = _load_gt(frame.normals, (h, w, 3), "normals") if has_normals and not frame.normals_png \
                else None
            d, nrm = downscale_depth(d, nrm, downscale)
            depths[i] = d
            if nrm is not None:
                normals[i] = nrm
    return BlenderSplit(
        rgba=rgba,
        poses=poses,
        camera_angle_x=float(fov),
        file_paths=[f.file_path for f in checked],
        depth=depths,
        normals=normals,
    )
