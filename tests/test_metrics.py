"""Metrics against closed forms, hand computation and scikit-image's SSIM."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from nerfpipe import metrics
from nerfpipe.metrics import (
    lpips,
    lpips_status,
    normal_mae_deg,
    psnr,
    psnr_softl1,
    ssim,
    weighted_normal_mae_deg,
)


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
        channel_axis=-1,
    )


# ---------------------------------------------------------------------------------------------- PSNR


def test_psnr_closed_form() -> None:
    gt = np.zeros((4, 5, 3))
    assert psnr(np.full_like(gt, 0.1), gt) == pytest.approx(20.0)  # mse 1e-2
    assert psnr(np.full_like(gt, 0.01), gt) == pytest.approx(40.0)
    # Half the pixels off by 0.2: mse = 0.02.
    pred = gt.copy()
    pred[:2] = 0.2
    assert psnr(pred, gt) == pytest.approx(-10 * math.log10(0.02))
    assert psnr(gt, gt) == math.inf


def test_psnr_softl1_hand_computation() -> None:
    gt = np.zeros((2, 2, 3))
    pred = gt.copy()
    pred[0] = 0.3  # 6 of 12 values off by 0.3
    eps = 1e-3
    expected = -10 * math.log10((6 * math.sqrt(0.09 + eps) + 6 * math.sqrt(eps)) / 12)
    assert psnr_softl1(pred, gt, eps) == pytest.approx(expected)
    # The legacy figure reads far below the real PSNR for a typical error (the original confusion).
    rng = np.random.default_rng(0)
    gt = rng.random((16, 16, 3))
    pred = np.clip(gt + 0.04 * rng.standard_normal(gt.shape), 0, 1)
    assert psnr(pred, gt) - psnr_softl1(pred, gt, eps) > 10


@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_psnr_softl1_is_minus_ten_log_of_the_training_loss(eps: float) -> None:
    """The legacy figure is -10 log10 of the SoftL1 training loss with the same eps."""
    import torch

    from nerfpipe.losses import softl1

    rng = np.random.default_rng(1)
    gt = rng.random((8, 8, 3))
    pred = np.clip(gt + 0.05 * rng.standard_normal(gt.shape), 0, 1)
    loss = float(softl1(torch.from_numpy(pred), torch.from_numpy(gt), eps))
    assert psnr_softl1(pred, gt, eps) == pytest.approx(-10 * math.log10(loss), rel=1e-12)


def test_psnr_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


# ---------------------------------------------------------------------------------------------- SSIM


def _structured_pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    checker = ((np.floor(x * 8) + np.floor(y * 8)) % 2)[..., None]
    ramp = np.stack([x, y, 0.5 * (x + y)], axis=-1)
    gt = 0.6 * ramp + 0.4 * checker
    pred = ndimage.gaussian_filter(gt, sigma=(1.0, 1.0, 0))  # a blurrier reconstruction
    pred = np.roll(pred, 1, axis=1) * 0.95 + 0.02
    return np.clip(pred, 0, 1), np.clip(gt, 0, 1)


def test_ssim_matches_skimage_on_random_images() -> None:
    rng = np.random.default_rng(1)
    for shape in [(32, 32, 3), (23, 41, 3), (11, 11, 3)]:
        gt = rng.random(shape)
        pred = np.clip(gt + 0.15 * rng.standard_normal(shape), 0, 1)
        assert ssim(pred, gt) == pytest.approx(_skimage_ssim(pred, gt), abs=1e-10)
        # Unrelated images too (SSIM near 0).
        other = rng.random(shape)
        assert ssim(other, gt) == pytest.approx(_skimage_ssim(other, gt), abs=1e-10)


def test_ssim_matches_skimage_on_structured_images() -> None:
    pred, gt = _structured_pair(48, 64)
    value = ssim(pred, gt)
    assert value == pytest.approx(_skimage_ssim(pred, gt), abs=1e-10)
    assert 0.3 < value < 0.99
    # Float32 input and a grayscale image.
    assert ssim(pred.astype(np.float32), gt.astype(np.float32)) == pytest.approx(
        _skimage_ssim(pred.astype(np.float64), gt.astype(np.float32).astype(np.float64)), abs=1e-6
    )
    gray = structural_similarity(
        pred[..., 0], gt[..., 0], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1,
    )
    assert ssim(pred[..., 0], gt[..., 0]) == pytest.approx(gray, abs=1e-10)


def test_ssim_identical_is_one_and_symmetric() -> None:
    rng = np.random.default_rng(2)
    img = rng.random((20, 24, 3))
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    other = np.clip(img + 0.1, 0, 1)
    assert ssim(img, other) == pytest.approx(ssim(other, img), abs=1e-12)
    assert ssim(img, other) < 1


def test_ssim_rejects_images_smaller_than_window() -> None:
    with pytest.raises(ValueError, match="11"):
        ssim(np.zeros((10, 32, 3)), np.zeros((10, 32, 3)))


# ---------------------------------------------------------------------------------------------- normals


def test_normal_mae_known_angles_and_mask() -> None:
    h, w = 4, 5
    gt = np.zeros((h, w, 3))
    gt[..., 2] = 1.0
    pred = np.zeros_like(gt)
    angle = np.radians(30.0)
    pred[..., 1], pred[..., 2] = np.sin(angle), np.cos(angle)
    pred[0] = [1.0, 0.0, 0.0]  # 90 degrees off in the first row
    pred *= 3.0  # unnormalised, as rendered normals are
    mask = np.ones((h, w), dtype=bool)
    assert normal_mae_deg(pred, gt, mask) == pytest.approx((5 * 90 + 15 * 30) / 20)
    mask[0] = False
    assert normal_mae_deg(pred, gt, mask) == pytest.approx(30.0)
    # Antiparallel normals are 180 degrees apart (clipping keeps arccos finite).
    assert normal_mae_deg(-gt, gt, mask) == pytest.approx(180.0)
    assert math.isnan(normal_mae_deg(pred, gt, np.zeros((h, w), dtype=bool)))


def test_weighted_normal_mae_by_hand() -> None:
    """multinerf's compute_weighted_mae: sum(w * angle) / sum(w), here with two known angles."""
    h, w = 2, 3
    gt = np.zeros((h, w, 3))
    gt[..., 2] = 2.0  # unnormalised ground truth is normalised too
    pred = np.zeros_like(gt)
    pred[0] = [0.0, np.sin(np.radians(60.0)), np.cos(np.radians(60.0))]  # 60 degrees off
    pred[1] = [0.0, 0.0, 0.5]  # exact
    weights = np.array([[1.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    # An exact match reads arccos(1 - eps32), 0.028 degrees: multinerf clips the cosine.
    exact = np.degrees(np.arccos(1 - float(np.finfo(np.float32).eps)))
    expected = (2 * 60.0 + 1.5 * exact) / (2 + 1.5)
    assert weighted_normal_mae_deg(pred, gt, weights) == pytest.approx(expected, rel=1e-6)
    # Uniform weights over a mask give the unweighted figure.
    mask = weights > 0
    assert weighted_normal_mae_deg(pred, gt, mask.astype(float)) == pytest.approx(
        normal_mae_deg(pred, gt, mask) + exact * 3 / 5, rel=1e-6)
    # Zero weight where the ground truth is background (zero vector) makes those pixels not count.
    gt[0, 2] = 0.0
    assert weighted_normal_mae_deg(pred, gt, weights) == pytest.approx(expected, rel=1e-6)
    assert math.isnan(weighted_normal_mae_deg(pred, gt, np.zeros((h, w))))
    # Antiparallel: the cosine is clipped to -(1 - eps32), so the angle is just below 180 degrees.
    one_eps = 1 - float(np.finfo(np.float32).eps)
    assert weighted_normal_mae_deg(-gt[1:], gt[1:], np.ones((1, w))) == pytest.approx(
        np.degrees(np.arccos(-one_eps)), rel=1e-12)


def test_weighted_normal_mae_matches_reference_formula_on_random_maps() -> None:
    rng = np.random.default_rng(4)
    pred, gt = rng.normal(size=(7, 9, 3)), rng.normal(size=(7, 9, 3))
    pred[0, 0] = 1e-5  # shorter than sqrt(eps): multinerf's l2_normalize leaves it short
    w = rng.uniform(size=(7, 9))
    eps = float(np.finfo(np.float32).eps)

    def l2n(x):
        out = np.empty_like(x)
        for idx in np.ndindex(x.shape[:-1]):
            v = x[idx]
            out[idx] = v / math.sqrt(max(float(v @ v), eps))
        return out

    p, g = l2n(pred), l2n(gt)
    num = sum(w[idx] * math.acos(min(max(float(p[idx] @ g[idx]), -(1 - eps)), 1 - eps))
              for idx in np.ndindex(w.shape))
    assert weighted_normal_mae_deg(pred, gt, w) == pytest.approx(math.degrees(num / w.sum()), rel=1e-12)


# ---------------------------------------------------------------------------------------------- LPIPS


@pytest.mark.skipif(importlib.util.find_spec("lpips") is not None, reason="lpips is installed here")
def test_lpips_reports_missing_package() -> None:
    ok, why = lpips_status()
    assert not ok and why == "lpips package not installed"
    assert lpips(np.zeros((16, 16, 3)), np.zeros((16, 16, 3))) is None


def test_lpips_reports_missing_weights_without_fetching(tmp_path: Path, monkeypatch) -> None:
    """With a package present but no backbone weights on disk, the status names the missing file."""
    pkg = tmp_path / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "weights" / "v0.1" / "alex.pth").write_bytes(b"")
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name: str, *args, **kwargs):
        if name == "lpips":
            return importlib.util.spec_from_file_location("lpips", pkg / "__init__.py")
        if name == "torchvision":
            return importlib.util.spec_from_file_location("torchvision", pkg / "__init__.py")
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(metrics.importlib.util, "find_spec", fake_find_spec)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    ok, why = lpips_status()
    assert not ok
    assert "backbone weights not on disk" in why and str(tmp_path / "torch_home") in why
    assert "cannot be fetched here" in why
    assert lpips(np.zeros((16, 16, 3)), np.zeros((16, 16, 3))) is None
