"""Decoding a frame's files into checked float32 arrays: images, Shiny Blender normal PNGs and
ground-truth .npy depth / normals.

Pixel values: 8-bit -> /255; 16-bit grayscale -> /65535; 16-bit colour PNGs are decoded by
Pillow at 8 bits per channel (error < 1/255). Grayscale is replicated to RGB; images without an
alpha channel get alpha 1. RGBA is straight (not premultiplied) alpha.

Hostile files are refused with a one-line NerfpipeError before any large allocation: an image
whose header declares more than MAX_IMAGE_PIXELS pixels is refused before decoding, and a .npy
file whose header declares another shape than expected is refused before loading.
"""

from __future__ import annotations

import struct
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nerfpipe.data.checks import is_file, short_repr
from nerfpipe.errors import NerfpipeError

# Largest image (width x height) that is decoded; the header is checked before decoding.
MAX_IMAGE_PIXELS = 64_000_000  # 64 megapixels, e.g. 8000x8000

# Pillow's own decompression-bomb limit is a process-wide setting; it is lifted only while a
# header is read (the stricter MAX_IMAGE_PIXELS check follows), under this lock.
_PIL_LIMIT_LOCK = threading.Lock()


def _pil_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image, UnidentifiedImageError

    # Pillow's decoders raise a zoo of types on corrupt files; all of them mean "cannot read".
    return (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
            KeyError, TypeError, ZeroDivisionError, Image.DecompressionBombError)


def _open_image(path: Path) -> Any:
    """Image.open (header only, nothing decoded) with the declared size checked against MAX_IMAGE_PIXELS."""
    from PIL import Image

    if not is_file(path):
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


def read_normal_png(path: Path, alpha: np.ndarray) -> np.ndarray:
    """World-space normals [H, W, 3] from a normal PNG: `rgb * 2 - 1`, 0 where `alpha` [H, W] is 0."""
    rgb = read_image(path)[..., :3]
    if rgb.shape[:2] != alpha.shape:
        raise NerfpipeError(f"{path}: normal image is {rgb.shape[0]}x{rgb.shape[1]} but its frame's image is "
                            f"{alpha.shape[0]}x{alpha.shape[1]}")
    normals = rgb * np.float32(2.0) - np.float32(1.0)
    return np.where((alpha > 0)[..., None], normals, np.float32(0.0)).astype(np.float32)


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


def read_ground_truth(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A ground-truth .npy file as float32 of `shape` ([H, W] depth or [H, W, 3] normals), finite.

    `what` ("depth", "normals") names it in messages; the header's shape is checked before loading.
    """
    if not is_file(path):
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
