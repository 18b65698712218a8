"""mip-NeRF 360's proposal framework (Barron et al. 2022) for bounded scenes.

Small proposal MLPs predict density only; their weights are resampled into the intervals of
the next level; the NeRF MLP renders the last level. The proposal MLPs learn only through the
interlevel loss (eq. 13), which asks their weights to bound the NeRF's; the distortion loss
(eq. 15) pulls the NeRF's weights together. Blender-style scenes are bounded, so the scene is
not contracted and distances are normalised linearly between near and far.
"""

from __future__ import annotations

import torch
from torch import nn

from nerfpipe import losses, sampling
from nerfpipe.models.base import LossFn, RadianceModel, RayBundle, final_outputs, level_key
from nerfpipe.models.fields import RGB_PADDING, DensityField, NerfField


class ProposalNeRF(RadianceModel):
    def __init__(self, settings: dict) -> None:
        super().__init__(settings)
        s = settings
        self.proposals = nn.ModuleList(
            DensityField(s["pe_pos"], s["prop_net_depth"], s["prop_net_width"]) for _ in s["prop_samples"])
        self.nerf = self.make_nerf_field(s)

    def make_nerf_field(self, s: dict) -> nn.Module:
        return NerfField("ipe", s["pe_pos"], s["pe_dir"], s["net_depth"], s["net_width"], "softplus",
                         rgb_padding=RGB_PADDING, srgb=s["srgb"])

    @property
    def samples_per_ray(self) -> int:
        return sum(self.settings["prop_samples"]) + self.settings["n_importance"]

    def forward(self, rays: RayBundle, key: int | None, background: torch.Tensor) -> dict:
        s = self.settings
        randomized = self.training and s["perturb"]
        t = sampling.stratified_endpoints(rays.near, rays.far, s["prop_samples"][0], randomized,
                                          level_key(key, 0))
        levels = []
        for i, prop in enumerate(self.proposals):
            level = self.render_level(prop, t, rays, background,
                                      want_normals=self.training and s["prop_normal"])
            levels.append(level)
            n_next = s["prop_samples"][i + 1] if i + 1 < len(self.proposals) else s["n_importance"]
            # Resampling is not differentiated: proposal weights are trained by the interlevel loss only.
            t = sampling.sample_pdf(t, level["weights"].detach(), n_next + 1, randomized,
                                    level_key(key, i + 1))
        levels.append(self.render_level(self.nerf, t, rays, background,
                                        want_normals=self.normals_for_display))
        return final_outputs(levels)

    def loss_terms(self, out: dict, rays: RayBundle, target: torch.Tensor, loss_fn: LossFn) -> dict:
        s = self.settings
        *props, final = out["levels"]
        terms = {"data": loss_fn(final["rgb"], target)}
        if s["interlevel_weight"] > 0:
            terms["interlevel"] = s["interlevel_weight"] * sum(
                losses.interlevel_loss(final["t"], final["weights"], p["t"], p["weights"]) for p in props)
        if s["distortion_weight"] > 0:
            near, far = rays.near[:, None], rays.far[:, None]
            s_dist = (final["t"] - near) / (far - near)
            terms["distortion"] = s["distortion_weight"] * losses.distortion_loss(s_dist, final["weights"])
        return terms
