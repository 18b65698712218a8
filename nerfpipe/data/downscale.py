"""Integer-factor area downscaling of a dataset's images and ground truth, alpha- and
foreground-aware: transparent pixels and background samples never bleed into their block."""

from __future__ import annotations

import numpy as np


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
    Returns (depth [H/k, W/k], normals [H/k, W/k, 3] or None), float32 (the inputs when factor is 1).
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
