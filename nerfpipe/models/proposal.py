"""mip-NeRF 360's proposal framework (Barron et al. 2022) for bounded scenes.

Small proposal MLPs predict density only; their weights are resampled into the intervals of
the next level; the NeRF MLP renders the last level. The proposal MLPs learn only through the
interlevel loss (eq. 13), which asks their weights to bound the NeRF's; the distortion loss
(eq. 15) pulls the NeRF's weights together. Blender-style scenes are bounded, so the scene is
not contracted and distances are normalised linearly between near and far.

Sample counts: level i of the proposals has `prop_samples[i]` intervals (the first stratified
between near and far), the NeRF level `n_importance` intervals drawn from the last proposal's
weights (`n_samples` is not used here: it is the coarse level of NeRF and mip-NeRF).

Resampling a proposal histogram follows multinerf's defaults, each switchable:
- `prop_dilation_multiplier` / `prop_dilation_bias`: the histogram is max-dilated in normalised
  distance s by `bias + multiplier / (product of the sample counts of the levels so far)` and
  renormalised (both 0: no dilation);
- `prop_anneal_slope`: the weights are raised to the power `s x / ((s - 1) x + 1)` of the training
  fraction x (Schlick's bias; 0: no annealing);
- `prop_single_jitter`: one jitter per ray instead of one per sample, in the stratified first level
  and in every inverse-transform sampling (false: `sampling.stratified_endpoints` and
  `sampling.sample_pdf`, with the extension where it is built).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nerfpipe import losses, render, sampling
from nerfpipe.models.base import LossFn, RadianceModel, RayBundle, final_outputs, level_key, train_fraction
from nerfpipe.models.fields import RGB_PADDING, DensityField, NerfField


class ProposalNeRF(RadianceModel):
    def __init__(self, settings: dict) -> None:
        super().__init__(settings)
        s = settings
        if s["n_importance"] < 1:
            raise ValueError(f"{s['method']}: n_importance (samples of the NeRF level) must be >= 1, "
                             f"got {s['n_importance']}")
        self.proposals = nn.ModuleList(
            DensityField(s["pe_pos"], s["prop_net_depth"], s["prop_net_width"], s["density_bias"])
            for _ in s["prop_samples"])
        self.nerf = self.make_nerf_field(s)

    def make_nerf_field(self, s: dict) -> nn.Module:
        return NerfField("ipe", s["pe_pos"], s["pe_dir"], s["net_depth"], s["net_width"], "softplus",
                         rgb_padding=RGB_PADDING, srgb=s["srgb"], density_bias=s["density_bias"])

    @property
    def samples_per_ray(self) -> int:
        return sum(self.settings["prop_samples"]) + self.settings["n_importance"]

    def clip_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {f"proposal_{i}": list(p.parameters()) for i, p in enumerate(self.proposals)}
        groups["nerf"] = list(self.nerf.parameters())
        return groups

    def dilation(self, level: int) -> float:
        """Dilation (in normalised distance) of level `level`'s histogram before the next level is drawn
        from it: bias + multiplier / (sample counts of levels 0..level multiplied), as in multinerf."""
        s = self.settings
        counts = math.prod(s["prop_samples"][:level + 1])
        return s["prop_dilation_bias"] + s["prop_dilation_multiplier"] / counts

    def resample(self, t: torch.Tensor, weights: torch.Tensor, rays: RayBundle, level: int, n_next: int,
                 randomized: bool, key: int | None, train_frac: float) -> torch.Tensor:
        """Endpoints [R, n_next + 1] of the level after `level`, drawn from its (detached) weights."""
        s = self.settings
        weights = weights.detach()
        if s["prop_dilation_multiplier"] > 0 or s["prop_dilation_bias"] > 0:
            near, far = rays.near[:, None].to(t.dtype), rays.far[:, None].to(t.dtype)
            sdist = (t - near) / (far - near)
            sdist, weights = render.max_dilate_weights(sdist, weights, self.dilation(level),
                                                       domain=(0.0, 1.0))
            # multinerf drops the outermost endpoint and weight on both sides (clipped to the domain).
            sdist, weights = sdist[..., 1:-1], weights[..., 1:-1]
            t = near + sdist * (far - near)
        power = render.anneal_power(train_frac, s["prop_anneal_slope"])
        if power != 1.0 or s["prop_dilation_multiplier"] > 0 or s["prop_dilation_bias"] > 0:
            weights = render.anneal_weights(t, weights, power)
        t, weights = t.contiguous(), weights.contiguous()
        sub_key = level_key(key, level + 1)
        if s["prop_single_jitter"]:
            return render.sample_pdf_single_jitter(t, weights, n_next + 1, randomized, sub_key)
        return sampling.sample_pdf(t, weights, n_next + 1, randomized, sub_key)

    def forward(self, rays: RayBundle, key: int | None, background: torch.Tensor) -> dict:
        s = self.settings
        randomized = self.training and s["perturb"]
        first = render.stratified_endpoints_single_jitter if s["prop_single_jitter"] \
            else sampling.stratified_endpoints
        t = first(rays.near, rays.far, s["prop_samples"][0], randomized, level_key(key, 0))
        train_frac = train_fraction(key if self.training else None, s["iterations"])
        levels = []
        for i, prop in enumerate(self.proposals):
            level = self.render_level(prop, t, rays, background,
                                      want_normals=self.training and s["prop_normal"])
            levels.append(level)
            n_next = s["prop_samples"][i + 1] if i + 1 < len(self.proposals) else s["n_importance"]
            # Resampling is not differentiated: proposal weights are trained by the interlevel loss only.
            t = self.resample(t, level["weights"], rays, i, n_next, randomized, key, train_frac)
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
