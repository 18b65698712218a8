"""NeRF (Mildenhall et al. 2020): positional encoding, coarse and fine MLPs, hierarchical sampling (NeRF's MLP
on the samples of an occupancy grid is nerfpipe.models.occgrid's)."""

from __future__ import annotations

import torch

from nerfpipe import sampling
from nerfpipe.models.base import LossFn, RadianceModel, RayBundle, final_outputs, level_key
from nerfpipe.models.fields import NerfField


class NeRF(RadianceModel):
    """Coarse network on stratified intervals; fine network on the union of the coarse endpoints
    and `n_importance` samples drawn from the coarse weights (sec. 5.2 of the paper)."""

    uses_gaussians = False

    def __init__(self, settings: dict) -> None:
        super().__init__(settings)
        s = settings
        self.coarse = NerfField("pe", s["pe_pos"], s["pe_dir"], s["net_depth"], s["net_width"], "relu",
                                srgb=s["srgb"])
        self.fine = NerfField("pe", s["pe_pos"], s["pe_dir"], s["net_depth_fine"], s["net_width_fine"],
                              "relu", srgb=s["srgb"])

    def clip_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"coarse": list(self.coarse.parameters()), "fine": list(self.fine.parameters())}

    @property
    def samples_per_ray(self) -> int:
        return self.settings["n_samples"] + (self.settings["n_samples"] + self.settings["n_importance"])

    def forward(self, rays: RayBundle, key: int | None, background: torch.Tensor) -> dict:
        s = self.settings
        randomized = self.training and s["perturb"]
        t_coarse = sampling.stratified_endpoints(rays.near, rays.far, s["n_samples"], randomized,
                                                 level_key(key, 0))
        coarse = self.render_level(self.coarse, t_coarse, rays, background)
        t_new = sampling.sample_pdf(t_coarse, coarse["weights"].detach(), s["n_importance"], randomized,
                                    level_key(key, 1))
        t_fine, _ = torch.sort(torch.cat([t_coarse, t_new], dim=-1), dim=-1)
        fine = self.render_level(self.fine, t_fine, rays, background, want_normals=self.normals_for_display)
        return final_outputs([coarse, fine])

    def loss_terms(self, out: dict, rays: RayBundle, target: torch.Tensor, loss_fn: LossFn) -> dict:
        coarse, fine = out["levels"]
        return {"data_coarse": loss_fn(coarse["rgb"], target), "data": loss_fn(fine["rgb"], target)}
