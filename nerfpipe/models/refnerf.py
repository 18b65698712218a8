"""Ref-NeRF (Verbin et al. 2022): on the proposal framework of mip-NeRF 360 (`refnerf`), and as in
the paper's Blender / Shiny Blender experiments (`refnerf_paper`: multinerf's blender_refnerf config,
two levels of one MLP)."""

from __future__ import annotations

import torch
from torch import nn

from nerfpipe import losses, sampling
from nerfpipe.models.base import LossFn, RadianceModel, RayBundle, final_outputs, level_key
from nerfpipe.models.fields import RGB_PADDING, RefField
from nerfpipe.models.proposal import ProposalNeRF


def ref_field(s: dict) -> RefField:
    """Ref-NeRF's field with the variant's settings (`dir_net_width` null: the spatial width)."""
    return RefField(s["pe_pos"], s["net_depth"], s["net_width"], s["bottleneck_width"], s["deg_view"],
                    srgb=s["srgb"], dir_depth=s["dir_net_depth"], dir_width=s["dir_net_width"],
                    density_bias=s["density_bias"], rgb_padding=RGB_PADDING)


def normal_loss_terms(s: dict, levels: list[dict], rays: RayBundle, coarse_normals: str | None) -> dict:
    """Ref-NeRF's regularisers, as multinerf computes them: the orientation loss (eq. 9) on the predicted
    normals and the predicted-normal loss (eq. 10), each `orientation_weight` / `pred_normal_weight` on
    the last level plus `orientation_coarse_weight` / `pred_normal_coarse_weight` on each earlier level
    that has the normals. The rendering weights are not detached: like multinerf (which stops no
    gradient here), the losses also move density, not only the normals.

    coarse_normals: which normals of the earlier levels the orientation loss uses ("normals_pred",
    "normals" for density normals, or None for none); the predicted-normal loss needs both.
    """
    *coarse, final = levels
    orientation, pred_normal = [], []
    if s["orientation_weight"] > 0:
        orientation.append(s["orientation_weight"] * losses.orientation_loss(
            final["weights"], final["normals_pred_samples"], rays.viewdirs))
    if s["pred_normal_weight"] > 0:
        pred_normal.append(s["pred_normal_weight"] * losses.pred_normal_loss(
            final["weights"], final["normals_samples"], final["normals_pred_samples"]))
    for level in coarse if coarse_normals is not None else []:
        if s["orientation_coarse_weight"] > 0:
            orientation.append(s["orientation_coarse_weight"] * losses.orientation_loss(
                level["weights"], level[f"{coarse_normals}_samples"], rays.viewdirs))
        if coarse_normals == "normals_pred" and s["pred_normal_coarse_weight"] > 0:
            pred_normal.append(s["pred_normal_coarse_weight"] * losses.pred_normal_loss(
                level["weights"], level["normals_samples"], level["normals_pred_samples"]))
    terms = {}
    if orientation:
        terms["orientation"] = sum(orientation[1:], orientation[0])
    if pred_normal:
        terms["pred_normal"] = sum(pred_normal[1:], pred_normal[0])
    return terms


class RefNeRF(ProposalNeRF):
    """Proposal levels as mip-NeRF 360; the NeRF level is Ref-NeRF's field. Adds the orientation loss
    (eq. 9, weight 0.1) and the predicted-normal loss (eq. 10, weight 3e-4) on the NeRF level. The
    proposal MLPs predict density only (no colour, no predicted normals) and, as in mip-NeRF 360, learn
    only through the interlevel loss: multinerf's coarse-level normal losses belong to its two-level
    single-MLP config (`refnerf_paper`). `prop_normal` adds the orientation loss on the proposals'
    density normals, weighted by `orientation_coarse_weight` (an ablation)."""

    def make_nerf_field(self, s: dict) -> nn.Module:
        return ref_field(s)

    def loss_terms(self, out: dict, rays: RayBundle, target: torch.Tensor, loss_fn: LossFn) -> dict:
        s = self.settings
        terms = super().loss_terms(out, rays, target, loss_fn)
        terms.update(normal_loss_terms(s, out["levels"], rays, "normals" if s["prop_normal"] else None))
        return terms


class RefNeRFPaper(RadianceModel):
    """Ref-NeRF as in the paper's Blender and Shiny Blender experiments (multinerf blender_refnerf.gin):
    one MLP queried at two levels like mip-NeRF, `n_samples` stratified coarse intervals and
    `n_importance` fine ones drawn from the coarse weights plus `resample_padding` (multinerf's
    Dirichlet padding: no blur filter, no annealing, no dilation, per-sample jitter). Loss:
    coarse_loss_mult x coarse data + data, the orientation and predicted-normal losses on both levels
    (0.1 / 0.01 and 3e-4 / 3e-5), no interlevel or distortion loss. The field: 8x256 spatial MLP,
    8x128 directional MLP, density softplus(x + 0.5), rgb padding 0.001 (METHOD_DEFAULTS)."""

    def __init__(self, settings: dict) -> None:
        super().__init__(settings)
        if settings["n_importance"] < 1:
            raise ValueError(f"refnerf_paper: n_importance (fine samples) must be >= 1, got "
                             f"{settings['n_importance']}")
        self.field = ref_field(settings)

    @property
    def samples_per_ray(self) -> int:
        return self.settings["n_samples"] + self.settings["n_importance"]

    def forward(self, rays: RayBundle, key: int | None, background: torch.Tensor) -> dict:
        s = self.settings
        randomized = self.training and s["perturb"]
        t0 = sampling.stratified_endpoints(rays.near, rays.far, s["n_samples"], randomized, level_key(key, 0))
        level0 = self.render_level(self.field, t0, rays, background)
        padded = level0["weights"].detach() + s["resample_padding"]
        t1 = sampling.sample_pdf(t0, padded, s["n_importance"] + 1, randomized, level_key(key, 1))
        level1 = self.render_level(self.field, t1, rays, background)
        return final_outputs([level0, level1])

    def loss_terms(self, out: dict, rays: RayBundle, target: torch.Tensor, loss_fn: LossFn) -> dict:
        s = self.settings
        level0, level1 = out["levels"]
        terms = {"data_coarse": s["coarse_loss_mult"] * loss_fn(level0["rgb"], target),
                 "data": loss_fn(level1["rgb"], target)}
        terms.update(normal_loss_terms(s, out["levels"], rays, "normals_pred"))
        return terms
