"""Ref-NeRF (Verbin et al. 2022) on the proposal framework of mip-NeRF 360."""

from __future__ import annotations

import torch
from torch import nn

from nerfpipe import losses
from nerfpipe.models.base import LossFn, RayBundle
from nerfpipe.models.fields import RefField
from nerfpipe.models.proposal import ProposalNeRF


class RefNeRF(ProposalNeRF):
    """Proposal levels as mip-NeRF 360; the NeRF level is Ref-NeRF's field. Adds the orientation
    loss (eq. 9, weight 0.1) and the predicted-normal loss (eq. 10, weight 3e-4) with stopped
    gradients on the weights, as in the paper."""

    def make_nerf_field(self, s: dict) -> nn.Module:
        return RefField(s["pe_pos"], s["net_depth"], s["net_width"], s["bottleneck_width"], s["deg_view"],
                        srgb=s["srgb"])

    def loss_terms(self, out: dict, rays: RayBundle, target: torch.Tensor, loss_fn: LossFn) -> dict:
        s = self.settings
        terms = super().loss_terms(out, rays, target, loss_fn)
        final = out["levels"][-1]
        w = final["weights"].detach()
        if s["orientation_weight"] > 0:
            terms["orientation"] = s["orientation_weight"] * losses.orientation_loss(
                w, final["normals_pred_samples"], rays.viewdirs)
            if s["prop_normal"]:
                for p in out["levels"][:-1]:
                    terms["orientation"] = terms["orientation"] + s["orientation_weight"] * \
                        losses.orientation_loss(p["weights"].detach(), p["normals_samples"], rays.viewdirs)
        if s["pred_normal_weight"] > 0:
            terms["pred_normal"] = s["pred_normal_weight"] * losses.pred_normal_loss(
                w, final["normals_samples"], final["normals_pred_samples"])
        return terms
