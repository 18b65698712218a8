"""What every method shares: the ray batch, per-level rendering and the loss interface.

A method renders a batch of rays in one or more *levels* (coarse/fine, or proposal levels
followed by the NeRF level). Each level is a set of sorted interval endpoints `t` [R, N+1]
and the weights [R, N] that volume rendering assigns to its intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import nn

from nerfpipe import encoding, render

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RayBundle:
    """A batch of R rays. origins, directions (unnormalised, camera z = -1), viewdirs: [R, 3];
    radii: [R, 1] base cone radius at unit distance; near, far: [R]."""

    origins: torch.Tensor
    directions: torch.Tensor
    viewdirs: torch.Tensor
    radii: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor

    def __len__(self) -> int:
        return self.origins.shape[0]

    def slice(self, start: int, stop: int) -> RayBundle:
        return RayBundle(*(getattr(self, f.name)[start:stop] for f in fields(self)))

    def index(self, index: torch.Tensor) -> RayBundle:
        """The rays at `index` [K] (a LongTensor) -> a bundle of K rays."""
        return RayBundle(*(getattr(self, f.name)[index] for f in fields(self)))

    def to(self, device: torch.device | str) -> RayBundle:
        return RayBundle(*(getattr(self, f.name).to(device) for f in fields(self)))


def level_key(key: int | None, level: int) -> int | None:
    """Random-number key of one sampling level; None (deterministic) stays None."""
    return None if key is None else key + 1 + level


def midpoints(t: torch.Tensor) -> torch.Tensor:
    """t: [R, N+1] -> [R, N] interval midpoints."""
    return 0.5 * (t[..., 1:] + t[..., :-1])


class RadianceModel(nn.Module):
    """Base of every method. Subclasses implement `forward` and `loss_terms`."""

    #: Whether the model's samples are Gaussians (IPE) rather than points (PE).
    uses_gaussians: bool = True

    def __init__(self, settings: dict) -> None:
        super().__init__()
        self.settings = settings
        self.render_normals = bool(settings.get("render_normal", False))

    @property
    def normals_for_display(self) -> bool:
        """Density normals of the last level when rendering images (render_normal). Not while
        training: no loss of NeRF, mip-NeRF or mip-NeRF 360 uses them, and the extra gradient
        pass would cost as much as the forward pass."""
        return self.render_normals and not self.training

    @property
    def samples_per_ray(self) -> int:
        """MLP evaluations per ray in one forward pass (all levels)."""
        raise NotImplementedError

    def sample_gaussians(self, t: torch.Tensor, rays: RayBundle) -> tuple[torch.Tensor, torch.Tensor | None]:
        """t: [R, N+1] -> means [R, N, 3], covs [R, N, 3] (None for point samples)."""
        if self.uses_gaussians:
            return encoding.cast_rays(t, rays.origins, rays.directions, rays.radii)
        points = rays.origins[:, None, :] + midpoints(t)[..., None] * rays.directions[:, None, :]
        return points, None

    def render_level(self, field: nn.Module, t: torch.Tensor, rays: RayBundle, background: torch.Tensor,
                     want_normals: bool = False) -> dict:
        """Query `field` on the intervals `t` [R, N+1] and volume-render them.

        Returns the field's outputs plus t, weights [R, N], and the composited rgb [R, 3],
        acc [R], depth [R] (and normals [R, 3] when asked for or produced by the field).
        """
        means, covs = self.sample_gaussians(t, rays)
        if want_normals and not getattr(field, "produces_normals", False):
            with torch.enable_grad():
                x = means.detach().requires_grad_(True)
                out = field(x, covs, rays.viewdirs)
                grad = torch.autograd.grad(out["density"].sum(), x, create_graph=self.training)[0]
            out["normals"] = render.normals_from_density_grad(grad)
        else:
            out = field(means, covs, rays.viewdirs)
        weights, _ = render.compute_weights(out["density"], t, rays.directions)
        out["t"] = t
        out["weights"] = weights
        if "rgb" in out:
            comp = render.composite(out["rgb"], weights, t, background)
            out["rgb_samples"] = out["rgb"]
            out.update(comp)
        for name in ("normals", "normals_pred"):
            if name in out:
                out[f"{name}_samples"] = out[name]
                out[name] = render.composite_normals(out[name], weights)
        return out

    def loss_terms(self, out: dict, rays: RayBundle, target: torch.Tensor, loss_fn: LossFn) -> dict:
        """Weighted loss terms (their sum is minimised). target: [R, 3] composited colour."""
        raise NotImplementedError


def final_outputs(levels: list[dict]) -> dict:
    """The last level's renders, and every level kept for the losses and plots."""
    out = {k: v for k, v in levels[-1].items() if not k.endswith("_samples")}
    out["levels"] = levels
    return out
