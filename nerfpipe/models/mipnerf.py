"""mip-NeRF (Barron et al. 2021): conical frustums, integrated positional encoding, one MLP
queried at two levels."""

from __future__ import annotations

import torch

from nerfpipe import render, sampling
from nerfpipe.models.base import LossFn, RadianceModel, RayBundle, final_outputs, level_key
from nerfpipe.models.fields import RGB_PADDING, NerfField


class MipNeRF(RadianceModel):
    """Level 0: `n_samples` stratified intervals. Level 1: `n_importance` intervals (`n_importance + 1`
    endpoints) resampled from the blurred, padded level-0 weights (sec. 3.2; the paper: 128 + 128).
    Loss: coarse_loss_mult * L0 + L1 (paper: 0.1)."""

    def __init__(self, settings: dict) -> None:
        super().__init__(settings)
        s = settings
        self.field = NerfField("ipe", s["pe_pos"], s["pe_dir"], s["net_depth"], s["net_width"], "softplus",
                               rgb_padding=RGB_PADDING, srgb=s["srgb"], density_bias=s["density_bias"])

    @property
    def samples_per_ray(self) -> int:
        return self.settings["n_samples"] + self.settings["n_importance"]

    def forward(self, rays: RayBundle, key: int | None, background: torch.Tensor) -> dict:
        s = self.settings
        randomized = self.training and s["perturb"]
        t0 = sampling.stratified_endpoints(rays.near, rays.far, s["n_samples"], randomized, level_key(key, 0))
        level0 = self.render_level(self.field, t0, rays, background)
        blurred = render.blur_weights_for_resampling(level0["weights"].detach(), s["resample_padding"])
        t1 = sampling.sample_pdf(t0, blurred, s["n_importance"] + 1, randomized, level_key(key, 1))
        level1 = self.render_level(self.field, t1, rays, background, want_normals=self.normals_for_display)
        return final_outputs([level0, level1])

    def loss_terms(self, out: dict, rays: RayBundle, target: torch.Tensor, loss_fn: LossFn) -> dict:
        level0, level1 = out["levels"]
        return {"data_coarse": self.settings["coarse_loss_mult"] * loss_fn(level0["rgb"], target),
                "data": loss_fn(level1["rgb"], target)}
