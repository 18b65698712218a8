"""Colour maps for depth, normals and errors, and side-by-side comparison strips.

All functions take and return numpy arrays; images are float `[H, W, 3]` in [0, 1].
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

DEPTH_CMAP = "turbo"
ERROR_CMAP = "inferno"
# A pixel whose accumulated opacity is below this is empty space and shown as background.
ACC_BACKGROUND = 0.5
BACKGROUND_RGB = (1.0, 1.0, 1.0)
# Keeps the error scale finite when prediction and ground truth agree exactly.
ERROR_VMAX_EPS = 1e-8
# White columns between the panels of a comparison strip, in pixels.
STRIP_GAP = 4


def apply_colormap(values: np.ndarray, name: str) -> np.ndarray:
    """Map values in [0, 1] through a matplotlib colour map.

    values: [H, W] (clipped to [0, 1], NaN treated as 0). Returns [H, W, 3] float32.
    """
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    return colormaps[name](v)[..., :3].astype(np.float32)


def _apply_background(rgb: np.ndarray, acc: np.ndarray | None) -> np.ndarray:
    if acc is None:
        return rgb
    acc = np.asarray(acc)
    if acc.shape != rgb.shape[:2]:
        raise ValueError(f"acc has shape {acc.shape}, expected {rgb.shape[:2]}")
    out = rgb.copy()
    out[acc < ACC_BACKGROUND] = np.asarray(BACKGROUND_RGB, dtype=rgb.dtype)
    return out


def depth_to_rgb(depth: np.ndarray, near: float, far: float, acc: np.ndarray | None = None) -> np.ndarray:
    """Colour-map depth linearly between `near` (first colour) and `far` (last colour).

    depth: [H, W]; acc: [H, W] accumulated opacity or None. Depths outside [near, far] are
    clipped; pixels with acc < ACC_BACKGROUND become background. Returns [H, W, 3].
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    if not far > near:
        raise ValueError(f"far ({far}) must be greater than near ({near})")
    rgb = apply_colormap((depth - near) / (far - near), DEPTH_CMAP)
    return _apply_background(rgb, acc)


def normals_to_rgb(normals: np.ndarray, acc: np.ndarray | None = None) -> np.ndarray:
    """Show unit normals as colours `(n + 1) / 2`.

    normals: [H, W, 3] in [-1, 1]; acc: [H, W] or None. Pixels with acc < ACC_BACKGROUND
    become background. Returns [H, W, 3] float32.
    """
    normals = np.asarray(normals, dtype=np.float32)
    if normals.ndim != 3 or normals.shape[-1] != 3:
        raise ValueError(f"normals must be [H, W, 3], got shape {normals.shape}")
    rgb = np.clip((np.nan_to_num(normals) + 1.0) * 0.5, 0.0, 1.0)
    return _apply_background(rgb, acc)


def error_heatmap(pred: np.ndarray, gt: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Colour-map the absolute error `|pred - gt|` averaged over channels.

    pred, gt: [H, W, 3]. The colour scale runs from 0 to `vmax` (default: the largest error
    in this image). Returns [H, W, 3] float32.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must be equal [H, W, C] shapes")
    err = np.abs(pred - gt).mean(axis=-1)
    scale = float(err.max()) if vmax is None else float(vmax)
    return apply_colormap(err / max(scale, ERROR_VMAX_EPS), ERROR_CMAP)


def comparison_strip(
    gt: np.ndarray, pred: np.ndarray, vmax: float | None = None, gap: int = STRIP_GAP
) -> np.ndarray:
    """Ground truth | prediction | error heat map, side by side with white gaps.

    gt, pred: [H, W, 3] in [0, 1]. Returns [H, 3W + 2*gap, 3] float32.
    """
    gt = np.asarray(gt, dtype=np.float32)
    pred = np.asarray(pred, dtype=np.float32)
    heat = error_heatmap(pred, gt, vmax=vmax)
    h = gt.shape[0]
    spacer = np.ones((h, gap, 3), dtype=np.float32)
    return np.concatenate([np.clip(gt, 0.0, 1.0), spacer, np.clip(pred, 0.0, 1.0), spacer, heat], axis=1)
