"""Colour maps hit their ends at near/far, normals map to (n+1)/2, strips are laid out as documented."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps

from nerfpipe.visualize import (
    ACC_BACKGROUND,
    BACKGROUND_RGB,
    DEPTH_CMAP,
    ERROR_CMAP,
    STRIP_GAP,
    comparison_strip,
    depth_to_rgb,
    error_heatmap,
    normals_to_rgb,
)


def _cmap(name: str, x: float) -> np.ndarray:
    return np.asarray(colormaps[name](x)[:3], dtype=np.float32)


def test_depth_near_far_map_to_colormap_ends():
    near, far = 2.0, 6.0
    depth = np.array([[near, far, 4.0], [0.5, 100.0, 3.0]])
    rgb = depth_to_rgb(depth, near, far)
    assert rgb.shape == (2, 3, 3)
    np.testing.assert_allclose(rgb[0, 0], _cmap(DEPTH_CMAP, 0.0), atol=1e-6)
    np.testing.assert_allclose(rgb[0, 1], _cmap(DEPTH_CMAP, 1.0), atol=1e-6)
    np.testing.assert_allclose(rgb[0, 2], _cmap(DEPTH_CMAP, 0.5), atol=1e-6)
    # out of range clips to the ends
    np.testing.assert_allclose(rgb[1, 0], rgb[0, 0])
    np.testing.assert_allclose(rgb[1, 1], rgb[0, 1])
    # the two ends are different colours (the map is not constant)
    assert np.abs(rgb[0, 0] - rgb[0, 1]).max() > 0.25


def test_depth_background_and_validation():
    depth = np.full((2, 2), 4.0)
    acc = np.array([[1.0, ACC_BACKGROUND - 0.01], [ACC_BACKGROUND, 0.0]])
    rgb = depth_to_rgb(depth, 2.0, 6.0, acc)
    bg = np.asarray(BACKGROUND_RGB, np.float32)
    np.testing.assert_allclose(rgb[0, 1], bg)
    np.testing.assert_allclose(rgb[1, 1], bg)
    np.testing.assert_allclose(rgb[0, 0], _cmap(DEPTH_CMAP, 0.5), atol=1e-6)
    np.testing.assert_allclose(rgb[1, 0], rgb[0, 0])
    with pytest.raises(ValueError, match="far"):
        depth_to_rgb(depth, 6.0, 2.0)
    with pytest.raises(ValueError, match="acc"):
        depth_to_rgb(depth, 2.0, 6.0, np.ones((3, 3)))
    assert np.isfinite(depth_to_rgb(np.array([[np.nan, np.inf]]), 2.0, 6.0)).all()


def test_normals_to_rgb():
    n = np.array([[[1, 0, 0], [0, -1, 0], [0, 0, 1]]], dtype=np.float32)
    rgb = normals_to_rgb(n)
    np.testing.assert_allclose(rgb[0], [[1, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 1]])
    acc = np.array([[1.0, 0.0, 1.0]])
    rgb = normals_to_rgb(n, acc)
    np.testing.assert_allclose(rgb[0, 1], BACKGROUND_RGB)
    np.testing.assert_allclose(rgb[0, 2], [0.5, 0.5, 1])


def test_error_heatmap_scale():
    gt = np.zeros((1, 3, 3), np.float32)
    pred = gt.copy()
    pred[0, 1] = 0.2  # mean abs error 0.2
    pred[0, 2] = [0.4, 0.4, 0.1]  # mean abs error 0.3 (the maximum)
    heat = error_heatmap(pred, gt)
    np.testing.assert_allclose(heat[0, 0], _cmap(ERROR_CMAP, 0.0), atol=1e-6)
    np.testing.assert_allclose(heat[0, 2], _cmap(ERROR_CMAP, 1.0), atol=1e-6)
    np.testing.assert_allclose(heat[0, 1], _cmap(ERROR_CMAP, 0.2 / 0.3), atol=1e-2)
    fixed = error_heatmap(pred, gt, vmax=0.4)
    np.testing.assert_allclose(fixed[0, 1], _cmap(ERROR_CMAP, 0.5), atol=1e-2)
    # identical images: finite, all at the low end
    same = error_heatmap(gt, gt)
    np.testing.assert_allclose(same, np.broadcast_to(_cmap(ERROR_CMAP, 0.0), same.shape), atol=1e-6)
    with pytest.raises(ValueError):
        error_heatmap(pred, gt[:, :2])


def test_comparison_strip_layout():
    rng = np.random.default_rng(0)
    h, w = 5, 7
    gt = rng.random((h, w, 3)).astype(np.float32)
    pred = rng.random((h, w, 3)).astype(np.float32)
    strip = comparison_strip(gt, pred)
    g = STRIP_GAP
    assert strip.shape == (h, 3 * w + 2 * g, 3)
    np.testing.assert_array_equal(strip[:, :w], gt)
    np.testing.assert_array_equal(strip[:, w : w + g], 1.0)
    np.testing.assert_array_equal(strip[:, w + g : 2 * w + g], pred)
    np.testing.assert_array_equal(strip[:, 2 * w + g : 2 * w + 2 * g], 1.0)
    np.testing.assert_allclose(strip[:, 2 * w + 2 * g :], error_heatmap(pred, gt))
    assert comparison_strip(gt, pred, gap=0).shape == (h, 3 * w, 3)
