"""Image metrics: PSNR (MSE), the legacy SoftL1 "PSNR", SSIM, normal angular error (weighted as in
multinerf, and an unweighted variant), LPIPS (optional); from ground-truth depth, the floater
fraction of the rendered weight (mip-NeRF 360 sec. 4) and the depth error.

All functions take numpy arrays (images `[H, W, 3]` in [0, 1], after background compositing) and
return Python floats. Averaging over a test split is the caller's job (mean of per-image values).
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from nerfpipe.protocol import SSIM_RADIUS, SSIM_SIGMA

# SSIM constants of the published tables (Wang et al. 2004); the window in nerfpipe.protocol.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_DATA_RANGE = 1.0
# Floor on a predicted normal's length before normalising (rendered normals are weighted sums).
NORMAL_NORM_EPS = 1e-12
# multinerf's ref_utils: l2_normalize floors |x|^2 at float32 eps; compute_weighted_mae clips the cosine
# to +-(1 - float32 eps).
FLOAT32_EPS = float(np.finfo(np.float32).eps)
# torchvision's AlexNet checkpoint, the backbone of LPIPS(net="alex").
LPIPS_BACKBONE_FILE = "alexnet-owt-7be5be79.pth"


def _pair(pred: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground truth shape {gt.shape}")
    return pred, gt


def psnr(pred: ArrayLike, gt: ArrayLike) -> float:
    """`-10 log10(mean((pred - gt)^2))` in dB for images in [0, 1]; +inf for identical images."""
    pred, gt = _pair(pred, gt)
    err = float(np.mean((pred - gt) ** 2))
    return math.inf if err == 0 else -10.0 * math.log10(err)


def psnr_softl1(pred: ArrayLike, gt: ArrayLike, eps: float) -> float:
    """The legacy figure `-10 log10(mean(sqrt(e^2 + eps)))`, computed from the SoftL1 training loss.

    It is not a PSNR (its argument is an L1-like error, not a squared one) and reads far lower than
    `psnr` for the same images; it is reported next to `psnr` only so old numbers can be compared.
    `eps` must be the training loss's.
    """
    pred, gt = _pair(pred, gt)
    return -10.0 * math.log10(float(np.mean(np.sqrt((pred - gt) ** 2 + eps))))


def _gaussian_window_1d() -> np.ndarray:
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return k / k.sum()


def _filter_valid(img: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian filter of [H, W, C], keeping only windows fully inside the image."""
    k = _gaussian_window_1d()
    out = ndimage.correlate1d(img, k, axis=0, mode="reflect")
    out = ndimage.correlate1d(out, k, axis=1, mode="reflect")
    r = SSIM_RADIUS
    return out[r:-r, r:-r]


def ssim(pred: ArrayLike, gt: ArrayLike) -> float:
    """Mean structural similarity (Wang et al. 2004) of two images [H, W, C] (or [H, W]) in [0, 1].

    11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (co)variances, mean of the
    SSIM map over all windows that lie inside the image, averaged over channels. Equals
    `skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=-1)`.
    """
    pred, gt = _pair(pred, gt)
    if pred.ndim == 2:
        pred, gt = pred[..., None], gt[..., None]
    side = 2 * SSIM_RADIUS + 1
    if pred.ndim != 3 or min(pred.shape[:2]) < side:
        raise ValueError(f"ssim needs images [H, W, C] with H, W >= {side}, got shape {pred.shape}")
    c1 = (SSIM_K1 * SSIM_DATA_RANGE) ** 2
    c2 = (SSIM_K2 * SSIM_DATA_RANGE) ** 2
    mu_x, mu_y = _filter_valid(pred), _filter_valid(gt)
    var_x = _filter_valid(pred * pred) - mu_x**2
    var_y = _filter_valid(gt * gt) - mu_y**2
    cov_xy = _filter_valid(pred * gt) - mu_x * mu_y
    numer = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    ssim_map = numer / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    # Mean per channel, then over channels (equal window counts make this the overall mean).
    return float(ssim_map.mean(axis=(0, 1)).mean())


def normal_mae_deg(pred_normals: ArrayLike, gt_normals: ArrayLike, mask: ArrayLike) -> float:
    """Unweighted mean angular error in degrees between normal maps [H, W, 3] over the pixels where
    `mask` [H, W] is true (every masked pixel counts the same, however transparent the render is there;
    the paper's figure is `weighted_normal_mae_deg`). Both maps are normalised first (rendered normals
    are weighted sums, not unit vectors). NaN when the mask is empty."""
    pred, gt = _pair(pred_normals, gt_normals)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != pred.shape[:-1]:
        raise ValueError(f"mask shape {mask.shape} does not match normal maps {pred.shape[:-1]}")
    if not mask.any():
        return math.nan
    p, g = pred[mask], gt[mask]
    p = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), NORMAL_NORM_EPS)
    g = g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), NORMAL_NORM_EPS)
    cos = np.clip((p * g).sum(axis=-1), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def weighted_normal_mae_deg(pred_normals: ArrayLike, gt_normals: ArrayLike, weights: ArrayLike) -> float:
    """Mean angular error in degrees weighted per pixel, the normal MAE of the Ref-NeRF paper (multinerf
    `eval.py`: weights = rendered opacity x ground-truth alpha, `ref_utils.compute_weighted_mae`).

    Both maps [H, W, 3] are normalised with `x / sqrt(max(|x|^2, eps))` (eps = float32 eps), the
    cosine is clipped to +-(1 - eps), and the result is `sum(w * arccos(cos)) / sum(w)` in degrees.
    NaN when the weights sum to 0.
    """
    pred, gt = _pair(pred_normals, gt_normals)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != pred.shape[:-1]:
        raise ValueError(f"weights shape {w.shape} does not match normal maps {pred.shape[:-1]}")
    total = float(w.sum())
    if not total > 0:
        return math.nan

    def l2_normalize(x: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.maximum((x * x).sum(axis=-1, keepdims=True), FLOAT32_EPS))

    one_eps = 1.0 - FLOAT32_EPS
    cos = np.clip((l2_normalize(pred) * l2_normalize(gt)).sum(axis=-1), -one_eps, one_eps)
    return float(np.degrees((w * np.arccos(cos)).sum() / total))


def _lpips_backbone_path() -> Path:
    import torch.hub  # local: only needed for the optional metric

    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILE


def lpips_status() -> tuple[bool, str]:
    """Whether LPIPS (AlexNet) can be computed here without any download, and if not, why.

    Needs the `lpips` package (with its bundled linear layers), `torchvision`, and torchvision's AlexNet
    weights already in the torch hub cache (`$TORCH_HOME/hub/checkpoints`). Nothing is ever fetched.
    """
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return False, "lpips package not installed"
    if importlib.util.find_spec("torchvision") is None:
        return False, "torchvision not installed (lpips needs it)"
    linear = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    if not linear.is_file():
        return False, f"lpips linear-layer weights not on disk at {linear}; they cannot be fetched here"
    backbone = _lpips_backbone_path()
    if not backbone.is_file():
        return False, f"backbone weights not on disk at {backbone}; they cannot be fetched here"
    return True, f"lpips (alex) with backbone {backbone}"


@lru_cache(maxsize=1)
def _lpips_model() -> Any:
    import lpips as lpips_pkg  # optional dependency

    # The backbone file exists (lpips_status), so torchvision loads it from the cache: no download.
    return lpips_pkg.LPIPS(net="alex", verbose=False).eval()


def lpips(pred: ArrayLike, gt: ArrayLike) -> float | None:
    """LPIPS (AlexNet, v0.1) of two images [H, W, 3] in [0, 1], or None where `lpips_status()` is false."""
    ok, _ = lpips_status()
    if not ok:
        return None
    import torch

    pred, gt = _pair(pred, gt)

    def to_tensor(img: np.ndarray) -> torch.Tensor:
        # LPIPS expects NCHW in [-1, 1].
        return torch.from_numpy(img).float().permute(2, 0, 1)[None] * 2 - 1

    with torch.no_grad():
        return float(_lpips_model()(to_tensor(pred), to_tensor(gt)).item())


# ---------------------------------------------------------------------------- floaters and depth
#
# mip-NeRF 360 (Barron et al. 2022) sec. 4 motivates its distortion loss by two artifacts of few or
# ambiguous views: "floaters" (small disconnected dense regions in free space) and "background
# collapse" (distant surfaces modelled as semi-transparent clouds close to the camera). Both put
# rendering weight away from the true surface, which ground-truth depth measures directly.

# A weight counts as a floater when it lies farther than FLOATER_DISTANCE_FRACTION x (far - near)
# from the true surface along its ray. 5 % of the ray's range is 0.2 scene units on Blender's 2..6:
# about 3 intervals of a 64-sample uniform level and 4-5 pixel footprints of a 64-pixel view at the
# object, so a sharp surface resolved by the sampling stays inside the band, while weight a clear
# gap away from it (a floater, a collapsed background) lies outside. Being a fraction of the range,
# it scales with the scene's units.
FLOATER_DISTANCE_FRACTION = 0.05


def floater_distance(near: float, far: float) -> float:
    """The floater metric's distance from the surface, in scene units: FLOATER_DISTANCE_FRACTION x
    (far - near)."""
    return FLOATER_DISTANCE_FRACTION * (float(far) - float(near))


def _near_surface_share(t: np.ndarray, gt: np.ndarray, distance: float, n_samples: int) -> np.ndarray:
    """Share [R, S] of each weight within `distance` of gt [R] (along t, camera z-depth).

    t [R, S]: a point per weight (inside iff |t - gt| <= distance). t [R, S+1]: interval endpoints,
    each weight spread evenly over its interval (the step-function view of mip-NeRF 360), so its share
    is the overlap of the interval with [gt - distance, gt + distance] over the interval's length; an
    empty interval counts as the point at its start.
    """
    g = gt[:, None]
    if t.shape[-1] == n_samples:
        return (np.abs(t - g) <= distance).astype(np.float64)
    lo, hi = t[:, :-1], t[:, 1:]
    length = hi - lo
    overlap = np.clip(np.minimum(hi, g + distance) - np.maximum(lo, g - distance), 0.0, None)
    point = (np.abs(lo - g) <= distance).astype(np.float64)
    safe = np.where(length > 0, length, 1.0)
    return np.where(length > 0, np.clip(overlap / safe, 0.0, 1.0), point)


def floater_fraction(weights: ArrayLike, t: ArrayLike, gt_depth: ArrayLike,
                     distance: float) -> dict[str, float]:
    """The share of the rendered weight that lies farther than `distance` from the true surface
    (mip-NeRF 360 sec. 4: floaters and background collapse).

    weights [R, S]: rendering weights of the level that makes the colour; t [R, S] the distance of each
    weight along its ray (interval midpoints) or [R, S+1] interval endpoints (each weight spread evenly
    over its interval); gt_depth [R]: the ground-truth depth of each ray's surface in the same units as
    t (camera z-depth here), 0 where the ray hits nothing; distance >= 0 in those units.

    Pools every ray: fraction = floater weight / total weight, where a ray with a surface contributes
    the weight outside [gt - distance, gt + distance] and a ray with no surface all of its weight.
    Returns {"fraction", "foreground" (floater weight on rays with a surface / total weight),
    "background" (weight on rays without one / total weight; foreground + background = fraction),
    "mean_weight" (total weight / rays, the mean rendered opacity), "rays", "background_rays"};
    the fractions are NaN when the total weight is 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    gt = np.asarray(gt_depth, dtype=np.float64)
    if w.ndim != 2 or gt.shape != w.shape[:1] or t.shape[:1] != w.shape[:1] or t.ndim != 2 \
            or t.shape[1] not in (w.shape[1], w.shape[1] + 1):
        raise ValueError(f"floater_fraction needs weights [R, S], t [R, S] or [R, S+1] and gt_depth [R]; "
                         f"got {w.shape}, {t.shape}, {gt.shape}")
    if not (math.isfinite(distance) and distance >= 0):
        raise ValueError(f"floater_fraction: distance must be finite and >= 0, got {distance}")
    background = gt <= 0
    near = _near_surface_share(t, gt, float(distance), w.shape[1]) * ~background[:, None]
    floater = (w * (1.0 - near)).sum(axis=-1)
    total = float(w.sum())
    fg, bg = float(floater[~background].sum()), float(floater[background].sum())

    def share(x: float) -> float:
        return x / total if total > 0 else math.nan

    return {"fraction": share(fg + bg), "foreground": share(fg), "background": share(bg),
            "mean_weight": total / w.shape[0] if w.shape[0] else math.nan, "rays": int(w.shape[0]),
            "background_rays": int(background.sum())}


def depth_error(depth: ArrayLike, gt_depth: ArrayLike) -> tuple[float, int]:
    """Mean absolute depth error over the foreground: depth, gt_depth [...] (same shape, same units;
    gt_depth 0 = background, left out). Returns (mean |depth - gt_depth| over gt_depth > 0, number of
    those pixels); the mean is NaN when there are none."""
    pred, gt = _pair(depth, gt_depth)
    mask = gt > 0
    n = int(mask.sum())
    return (float(np.abs(pred[mask] - gt[mask]).mean()) if n else math.nan), n
