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

# The training step key `train.step_key(seed, iteration) = (seed << 40) | (iteration << 4)` carries the
# iteration in these bits; the model reads its training fraction from it (proposal annealing).
ITERATION_SHIFT = 4
ITERATION_BITS = 36
# multinerf's `clip_gradients` divides by (norm + float32 eps).
CLIP_EPS = float(torch.finfo(torch.float32).eps)
GRAD_CLIP_MODES = ("per_mlp", "global")


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


def key_iteration(key: int) -> int:
    """The training iteration a step key carries (`training.step_key`): bits ITERATION_SHIFT and up."""
    return (key >> ITERATION_SHIFT) & ((1 << ITERATION_BITS) - 1)


def train_fraction(key: int | None, iterations: int) -> float:
    """Fraction of training done at the step whose key is `key`: multinerf's
    `train_frac = clip((step - 1) / (max_steps - 1), 0, 1)` with step = iteration + 1. A key of None
    (evaluation, rendering) means training is done: 1."""
    if key is None:
        return 1.0
    return min(max(key_iteration(key) / max(iterations - 1, 1), 0.0), 1.0)


def clip_grad_norms_(groups: dict[str, list[nn.Parameter]], max_norm: float) -> dict[str, float]:
    """Scale the gradients of each group by `min(1, max_norm / (eps + |g|))`, |g| the L2 norm over the
    group's gradients (multinerf `clip_gradients`, one group per MLP). Returns the norms before clipping."""
    norms = {}
    for name, params in groups.items():
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            continue
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float())
                                                     for g in grads]))
        scale = torch.clamp(max_norm / (CLIP_EPS + norm), max=1.0)
        for g in grads:
            g.mul_(scale.to(g.dtype))
        norms[name] = float(norm)
    return norms


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

    def clip_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of each MLP, clipped separately by `clip_gradients_` in "per_mlp" mode (multinerf
        clips the gradients of each of its MLPs on its own). The groups partition `parameters()`."""
        return {"model": list(self.parameters())}

    def clip_gradients_(self, max_norm: float, mode: str = "per_mlp") -> None:
        """Clip the gradients in place: each `clip_groups()` group to norm `max_norm` ("per_mlp"), or all
        parameters together with `torch.nn.utils.clip_grad_norm_` ("global")."""
        if mode == "global":
            torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)
        elif mode == "per_mlp":
            clip_grad_norms_(self.clip_groups(), max_norm)
        else:
            raise ValueError(f"grad_clip_mode must be one of {', '.join(GRAD_CLIP_MODES)}, got {mode!r}")

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
