"""Input encodings shared by every method: mip-NeRF's integrated positional encoding, Ref-NeRF's
integrated directional encoding, reflection, and sRGB tone mapping.

Notation (fixed for the whole package): along a ray, `t [..., N+1]` are sorted interval endpoints;
`directions d [..., 3]` are unnormalised (camera z component = -1, so `t` is camera z-depth);
`radii [..., 1]` is the base radius of a pixel's cone at unit `t`.

The plain positional encoding `[x, sin(2^k x), cos(2^k x)]` lives in `nerfpipe.encoding_ext` (it has an
extension kernel); this module holds the closed-form parts that have none.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# Guards |d|^2 in the perpendicular projector against a zero direction (mip-NeRF uses the same floor).
DIR_NORM_SQ_EPS = 1e-10
# Floor for the sRGB power branch: keeps the gradient of x^(5/12) finite at x = 0.
SRGB_EPS = float(np.finfo(np.float32).eps)
# Ref-NeRF uses levels up to l = 16 (deg_view = 5); larger degrees are not needed by any method.
MAX_DEG_VIEW = 5


# --------------------------------------------------------------------------------------------------------
# mip-NeRF: conical frustums as Gaussians, integrated positional encoding
# --------------------------------------------------------------------------------------------------------


def conical_frustum_to_gaussian(
    d: Tensor, t0: Tensor, t1: Tensor, base_radius: Tensor
) -> tuple[Tensor, Tensor]:
    """Approximate conical frustums along a ray by Gaussians (mip-NeRF eq. 7-8).

    The frustum is the set of points `t d + p` with `t in [t0, t1]` and `p` perpendicular to `d`,
    `|p| <= t * base_radius`. Its mean and variances are computed in the numerically stable form of
    mip-NeRF eq. 7 (`mu = (t0+t1)/2`, `hw = (t1-t0)/2`), then lifted to 3D (eq. 8) with a diagonal
    covariance: `diag(var_t d d^T + var_r (I - d d^T / |d|^2))`.

    Args:
        d: [..., 3] ray direction (unnormalised).
        t0, t1: [..., N] interval start and end along the ray (t0 <= t1).
        base_radius: [..., 1] cone radius at t = 1.

    Returns:
        mean: [..., N, 3] frustum means relative to the ray origin.
        cov_diag: [..., N, 3] diagonal of the frustum covariances.
    """
    mu = (t0 + t1) / 2
    hw = (t1 - t0) / 2
    mu2, hw2 = mu**2, hw**2
    denom = 3 * mu2 + hw2
    t_mean = mu + (2 * mu * hw2) / denom
    t_var = hw2 / 3 - (4 / 15) * (hw2**2 * (12 * mu2 - hw2)) / denom**2
    r_var = base_radius**2 * (mu2 / 4 + (5 / 12) * hw2 - (4 / 15) * hw2**2 / denom)

    d = d[..., None, :]
    mean = d * t_mean[..., None]
    d_sq = d**2
    d_norm_sq = torch.clamp_min(d_sq.sum(dim=-1, keepdim=True), DIR_NORM_SQ_EPS)
    perp_diag = 1 - d_sq / d_norm_sq  # diagonal of the projector onto the plane perpendicular to d
    cov_diag = t_var[..., None] * d_sq + r_var[..., None] * perp_diag
    return mean, cov_diag


def cast_rays(t: Tensor, origins: Tensor, directions: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """Gaussians of the conical frustums between consecutive endpoints `t` (mip-NeRF sec. 3.1).

    Args:
        t: [R, N+1] sorted interval endpoints.
        origins: [R, 3] ray origins; directions: [R, 3] unnormalised directions.
        radii: [R, 1] cone base radius at t = 1.

    Returns:
        means: [R, N, 3] world-space means; cov_diag: [R, N, 3] diagonal covariances.
    """
    mean, cov_diag = conical_frustum_to_gaussian(directions, t[..., :-1], t[..., 1:], radii)
    return mean + origins[..., None, :], cov_diag


def integrated_pos_enc(mean: Tensor, var: Tensor, num_freqs: int) -> Tensor:
    """Integrated positional encoding of a diagonal Gaussian (mip-NeRF eq. 14).

    E[sin(a x)] for x ~ N(mu, v) is sin(a mu) exp(-a^2 v / 2); with a = 2^k this gives
    `sin(2^k mu) exp(-0.5 4^k v)` and likewise for cos.

    Args:
        mean: [..., C] Gaussian means; var: [..., C] per-coordinate variances.
        num_freqs: L, frequencies 2^0 .. 2^(L-1).

    Returns:
        [..., 2*C*L] laid out as `[sin block, cos block]`; inside each block frequency-major,
        channel-minor: index `k*C + c` holds frequency 2^k of channel c. The identity is not included.
    """
    scales = 2.0 ** torch.arange(num_freqs, dtype=mean.dtype, device=mean.device)
    shape = mean.shape[:-1] + (num_freqs * mean.shape[-1],)
    scaled_mean = (mean[..., None, :] * scales[:, None]).reshape(shape)
    scaled_var = (var[..., None, :] * scales[:, None] ** 2).reshape(shape)
    damping = torch.exp(-0.5 * scaled_var)
    return torch.cat([torch.sin(scaled_mean) * damping, torch.cos(scaled_mean) * damping], dim=-1)


# --------------------------------------------------------------------------------------------------------
# Ref-NeRF: reflection and integrated directional encoding
# --------------------------------------------------------------------------------------------------------


def reflect(viewdirs: Tensor, normals: Tensor) -> Tensor:
    """Reflect the outgoing direction about the normals (Ref-NeRF eq. 4).

    With `omega_o = -viewdirs` (pointing from the surface back to the camera) the reflected direction
    is `omega_r = 2 (omega_o . n) n - omega_o`; it has the same length as `viewdirs` and the same
    angle to `n` as `omega_o`.

    Args:
        viewdirs: [..., 3] view directions, camera -> scene (unit).
        normals: [..., 3] unit normals.

    Returns:
        [..., 3] reflection directions.
    """
    omega_o = -viewdirs
    return 2 * (omega_o * normals).sum(dim=-1, keepdim=True) * normals - omega_o


def ide_levels(deg_view: int) -> list[int]:
    """Spherical-harmonic degrees used by the IDE: l = 1, 2, 4, ..., 2^(deg_view-1)."""
    return [2**i for i in range(deg_view)]


def ide_lm_pairs(deg_view: int) -> list[tuple[int, int]]:
    """(l, m) of each IDE component, in output order (l ascending, then m = 0..l)."""
    return [(l, m) for l in ide_levels(deg_view) for m in range(l + 1)]


def ide_output_dim(deg_view: int) -> int:
    """Width of `integrated_dir_enc`'s output: real and imaginary parts of every (l, m)."""
    return 2 * len(ide_lm_pairs(deg_view))


def _sph_harm_norms(deg_view: int) -> np.ndarray:
    """[K] orthonormalisation constants N_lm = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!) in `ide_lm_pairs` order."""
    return np.array(
        [
            math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            for l, m in ide_lm_pairs(deg_view)
        ]
    )


def _legendre_polynomial_parts(z: Tensor, l_max: int) -> list[Tensor]:
    """Q_l^m(z) = P_l^m(z) / (1 - z^2)^(m/2) for l = 0..l_max, each [..., l_max+1] over m (0 for m > l).

    P_l^m carries the Condon-Shortley phase. Uses the standard three-term recurrence in l, which is
    stable in float32 (the expanded power series in z loses ~1e-3 at l = 16 to cancellation):
    Q_m^m = (-1)^m (2m-1)!!,  (l-m) Q_l^m = (2l-1) z Q_{l-1}^m - (l+m-1) Q_{l-2}^m.
    """
    m = torch.arange(l_max + 1, dtype=z.dtype, device=z.device)
    double_fact = np.array([np.prod(np.arange(2 * k - 1, 0, -2, dtype=np.float64)) for k in range(l_max + 1)])
    diag = torch.as_tensor((-1.0) ** np.arange(l_max + 1) * double_fact, dtype=z.dtype, device=z.device)
    zeros = torch.zeros(z.shape[:-1] + (l_max + 1,), dtype=z.dtype, device=z.device)
    parts: list[Tensor] = []
    q_prev2, q_prev = zeros, zeros
    for l in range(l_max + 1):
        below = m < l  # orders reached by the recurrence; m == l is the seed, m > l vanishes
        recur = ((2 * l - 1) * z * q_prev - (l + m - 1) * q_prev2) / torch.clamp_min(l - m, 1)
        q = torch.where(below, recur, torch.where(m == l, diag, zeros))
        parts.append(q)
        q_prev2, q_prev = q_prev, q
    return parts


def sph_harm_basis(dirs: Tensor, deg_view: int = MAX_DEG_VIEW) -> tuple[Tensor, Tensor]:
    """Complex spherical harmonics Y_l^m (orthonormal, with the Condon-Shortley phase) of unit `dirs`.

    Uses `Y_l^m = N_lm (x + iy)^m Q_l^m(z)` with `Q_l^m = P_l^m / sin^m(theta)`, valid on the unit
    sphere, for the (l, m) pairs of `ide_lm_pairs(deg_view)`; the convention of
    `scipy.special.sph_harm_y(l, m, theta, phi)` (theta polar from +z, phi azimuth from +x).

    Args:
        dirs: [..., 3] unit directions.
        deg_view: number of levels (l = 1, 2, 4, ..., 2^(deg_view-1)); at most 5.

    Returns:
        (real, imag): each [..., K], K = sum_l (l + 1).
    """
    if not 1 <= deg_view <= MAX_DEG_VIEW:
        raise ValueError(f"deg_view must be in 1..{MAX_DEG_VIEW}, got {deg_view}")
    pairs = ide_lm_pairs(deg_view)
    l_max = max(ide_levels(deg_view))
    x, y, z = dirs[..., 0:1], dirs[..., 1:2], dirs[..., 2:3]

    q = _legendre_polynomial_parts(z, l_max)
    z_part = torch.stack([q[l][..., m] for l, m in pairs], dim=-1)
    z_part = z_part * torch.as_tensor(_sph_harm_norms(deg_view), dtype=dirs.dtype, device=dirs.device)

    # Real and imaginary parts of (x + iy)^m = sin^m(theta) e^(i m phi) for m = 0..l_max.
    re, im = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(l_max):
        a, b = re[-1], im[-1]
        re.append(a * x - b * y)
        im.append(a * y + b * x)
    xy_re = torch.cat([re[m] for _, m in pairs], dim=-1)
    xy_im = torch.cat([im[m] for _, m in pairs], dim=-1)
    return xy_re * z_part, xy_im * z_part


def integrated_dir_enc(dirs: Tensor, roughness: Tensor, deg_view: int = MAX_DEG_VIEW) -> Tensor:
    """Integrated directional encoding (Ref-NeRF eq. 6-8).

    The expected spherical harmonics under a von Mises-Fisher lobe with concentration `1/roughness`
    are approximated by `Y_l^m(dirs) * exp(-l(l+1) roughness / 2)` (Ref-NeRF eq. 7).

    Args:
        dirs: [..., 3] unit directions (the reflection direction in Ref-NeRF).
        roughness: [..., 1] rho = 1/kappa >= 0.
        deg_view: number of levels, l = 1, 2, 4, ..., 2^(deg_view-1) (at most 5).

    Returns:
        [..., ide_output_dim(deg_view)] laid out as `[Re Y, Im Y]`, each in `ide_lm_pairs` order.
        Zero roughness gives the plain spherical-harmonic directional encoding.
    """
    real, imag = sph_harm_basis(dirs, deg_view)
    ls = torch.tensor([l for l, _ in ide_lm_pairs(deg_view)], dtype=dirs.dtype, device=dirs.device)
    atten = torch.exp(-0.5 * ls * (ls + 1) * roughness)
    return torch.cat([real * atten, imag * atten], dim=-1)


# --------------------------------------------------------------------------------------------------------
# Tone mapping
# --------------------------------------------------------------------------------------------------------


def linear_to_srgb(x: Tensor) -> Tensor:
    """Linear radiance -> sRGB (IEC 61966-2-1), elementwise, any shape.

    `12.92 x` for x <= 0.0031308, else `1.055 x^(1/2.4) - 0.055`. The power branch sees
    `max(x, eps)` so that its (unused) gradient at x <= 0 is finite instead of NaN.
    """
    linear = 12.92 * x
    power = 1.055 * torch.clamp_min(x, SRGB_EPS) ** (1 / 2.4) - 0.055
    return torch.where(x <= 0.0031308, linear, power)
