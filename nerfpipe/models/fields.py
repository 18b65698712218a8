"""Radiance fields: networks that map samples along rays to density and colour.

Every field takes the samples of a batch of rays as Gaussians (`means`, `covs`: [R, N, 3],
world space; `covs` is None for point samples) and the rays' unit view directions
`viewdirs` [R, 3], and returns a dict with at least `density` [R, N] (>= 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nerfpipe import encoding, encoding_ext, render
from nerfpipe.models.mlp import MLP, default_skip

# Ref-NeRF's diffuse colour is sigmoid(x - log 3) so that it starts near 0.25 (Verbin et al. 2022, sec. 4).
DIFFUSE_BIAS = math.log(3.0)
# mip-NeRF widens the colour sigmoid so that 0 and 1 are reachable (Barron et al. 2021, sec. 4).
RGB_PADDING = 0.001
# softplus(x - 1) density, as in mip-NeRF: starts the field almost empty, so early weights are small.
# The default of the `density_bias` setting; multinerf's Blender Ref-NeRF config uses +0.5.
DENSITY_BIAS = -1.0


def density_activation(raw: torch.Tensor, kind: str, bias: float = DENSITY_BIAS) -> torch.Tensor:
    """raw: [...] -> density [...] >= 0. NeRF used ReLU; mip-NeRF onwards softplus(x + bias), bias -1."""
    if kind == "relu":
        return torch.relu(raw)
    return F.softplus(raw + bias)


def pad_rgb(rgb: torch.Tensor, padding: float) -> torch.Tensor:
    """Widen colours in [0, 1] to [-padding, 1 + padding] so that 0 and 1 are reachable (mip-NeRF sec. 4)."""
    return rgb * (1 + 2 * padding) - padding if padding > 0 else rgb


class PositionEncoder(nn.Module):
    """Encodes sample positions: NeRF's PE of the point, or mip-NeRF's IPE of the Gaussian."""

    def __init__(self, kind: str, num_freqs: int) -> None:
        super().__init__()
        if kind not in ("pe", "ipe"):
            raise ValueError(f"unknown position encoding {kind!r}")
        self.kind = kind
        self.num_freqs = num_freqs
        self.out_dim = 3 * (1 + 2 * num_freqs) if kind == "pe" else 3 * 2 * num_freqs

    def forward(self, means: torch.Tensor, covs: torch.Tensor | None) -> torch.Tensor:
        """means, covs: [R, N, 3] -> [R, N, out_dim]."""
        if self.kind == "pe":
            return encoding_ext.positional_encoding(means, self.num_freqs, include_input=True)
        if covs is None:
            raise ValueError("IPE needs the Gaussians' covariances")
        return encoding_ext.integrated_pos_enc(means, covs, self.num_freqs)


class NerfField(nn.Module):
    """NeRF's field: position MLP -> density and a feature; feature + encoded view -> colour."""

    def __init__(self, pos_kind: str, pe_pos: int, pe_dir: int, depth: int, width: int,
                 density_kind: str, rgb_padding: float = 0.0, srgb: bool = False,
                 density_bias: float = DENSITY_BIAS) -> None:
        super().__init__()
        self.pos_enc = PositionEncoder(pos_kind, pe_pos)
        self.pe_dir = pe_dir
        dir_dim = 3 * (1 + 2 * pe_dir)
        self.trunk = MLP(self.pos_enc.out_dim, width, depth, default_skip(depth))
        self.density_head = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.view_layer = nn.Linear(width + dir_dim, width // 2)
        self.rgb_head = nn.Linear(width // 2, 3)
        self.density_kind = density_kind
        self.density_bias = density_bias
        self.rgb_padding = rgb_padding
        self.srgb = srgb

    def forward(self, means: torch.Tensor, covs: torch.Tensor | None, viewdirs: torch.Tensor) -> dict:
        h = self.trunk(self.pos_enc(means, covs))
        density = density_activation(self.density_head(h)[..., 0], self.density_kind, self.density_bias)
        dir_enc = encoding_ext.positional_encoding(viewdirs, self.pe_dir, include_input=True)
        dir_enc = dir_enc[:, None, :].expand(*h.shape[:-1], dir_enc.shape[-1])
        v = torch.relu(self.view_layer(torch.cat([self.feature(h), dir_enc], dim=-1)))
        rgb = pad_rgb(torch.sigmoid(self.rgb_head(v)), self.rgb_padding)
        if self.srgb:
            # The network predicts linear radiance; images are sRGB.
            rgb = torch.clamp(encoding.linear_to_srgb(torch.clamp(rgb, 0.0, 1.0)), 0.0, 1.0)
        return {"density": density, "rgb": rgb}


class DensityField(nn.Module):
    """mip-NeRF 360's proposal field: a small MLP that predicts density only (sec. 3)."""

    def __init__(self, pe_pos: int, depth: int, width: int, density_bias: float = DENSITY_BIAS) -> None:
        super().__init__()
        self.pos_enc = PositionEncoder("ipe", pe_pos)
        self.trunk = MLP(self.pos_enc.out_dim, width, depth, default_skip(depth))
        self.density_head = nn.Linear(width, 1)
        self.density_bias = density_bias

    def forward(self, means: torch.Tensor, covs: torch.Tensor | None, viewdirs: torch.Tensor) -> dict:
        h = self.trunk(self.pos_enc(means, covs))
        return {"density": density_activation(self.density_head(h)[..., 0], "softplus", self.density_bias)}


class RefField(nn.Module):
    """Ref-NeRF's field (Verbin et al. 2022, fig. 2).

    Spatial MLP -> density, diffuse colour, specular tint, roughness, predicted normal and a
    bottleneck; density normals n = -grad(sigma)/|grad(sigma)|; the view direction is reflected
    about the predicted normal and encoded with the integrated directional encoding (IDE);
    directional MLP -> specular colour; colour = tonemap(diffuse + tint * specular), clipped to [0, 1]
    and padded by `rgb_padding` as every multinerf MLP does. The directional MLP (`dir_depth` x
    `dir_width`, default the spatial width) re-injects its input like the spatial one; multinerf's
    Blender Ref-NeRF uses 8 x 128.
    """

    produces_normals = True

    def __init__(self, pe_pos: int, depth: int, width: int, bottleneck_width: int, deg_view: int,
                 srgb: bool = True, dir_depth: int = 2, dir_width: int | None = None,
                 density_bias: float = DENSITY_BIAS, rgb_padding: float = RGB_PADDING) -> None:
        super().__init__()
        self.pos_enc = PositionEncoder("ipe", pe_pos)
        self.trunk = MLP(self.pos_enc.out_dim, width, depth, default_skip(depth))
        # density(1) + diffuse(3) + tint(3) + roughness(1) + predicted normal(3)
        self.spatial_head = nn.Linear(width, 11)
        self.bottleneck = nn.Linear(width, bottleneck_width)
        self.deg_view = deg_view
        ide_dim = encoding.ide_output_dim(deg_view)
        self.dir_mlp = MLP(bottleneck_width + ide_dim + 1, dir_width or width, dir_depth,
                           default_skip(dir_depth))
        self.specular_head = nn.Linear(self.dir_mlp.out_dim, 3)
        self.srgb = srgb
        self.density_bias = density_bias
        self.rgb_padding = rgb_padding

    def forward(self, means: torch.Tensor, covs: torch.Tensor | None, viewdirs: torch.Tensor) -> dict:
        with torch.enable_grad():
            # Density normals need d(sigma)/d(x) also at evaluation time; keep the graph while training
            # so that the orientation and predicted-normal losses reach the density.
            x = means.detach().requires_grad_(True)
            h = self.trunk(self.pos_enc(x, covs))
            head = self.spatial_head(h)
            raw_density = head[..., 0]
            grad = torch.autograd.grad(raw_density.sum(), x, create_graph=self.training)[0]
        normals = render.normals_from_density_grad(grad)
        density = density_activation(raw_density, "softplus", self.density_bias)
        diffuse = torch.sigmoid(head[..., 1:4] - DIFFUSE_BIAS)
        tint = torch.sigmoid(head[..., 4:7])
        roughness = F.softplus(head[..., 7:8] - 1.0)
        normals_pred = -F.normalize(head[..., 8:11], dim=-1, eps=1e-6)
        bottleneck = self.bottleneck(h)

        view = viewdirs[:, None, :].expand_as(normals_pred)
        refdirs = encoding.reflect(view, normals_pred)
        dir_enc = encoding.integrated_dir_enc(refdirs, roughness, self.deg_view)
        # n.omega_o: cosine between the normal and the direction towards the camera (Ref-NeRF eq. 8 input)
        dotprod = (normals_pred * -view).sum(-1, keepdim=True)
        v = self.dir_mlp(torch.cat([bottleneck, dir_enc, dotprod], dim=-1))
        specular = torch.sigmoid(self.specular_head(v))
        linear_rgb = diffuse + tint * specular
        rgb = encoding.linear_to_srgb(linear_rgb) if self.srgb else linear_rgb
        rgb = pad_rgb(torch.clamp(rgb, 0.0, 1.0), self.rgb_padding)
        return {"density": density, "rgb": rgb, "normals": normals, "normals_pred": normals_pred,
                "roughness": roughness[..., 0]}
