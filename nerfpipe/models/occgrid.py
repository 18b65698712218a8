"""NeRF and mip-NeRF on the samples of an occupancy grid (`estimator: occgrid`; nerfacc's design, Li et al.
2023, "NerfAcc: Efficient Sampling Accelerates NeRFs"): one MLP on fixed-step samples in the occupied cells
of a grid over `occ_aabb` (nerfpipe.estimators), in place of the stratified + hierarchical levels.

- `NeRFOccGrid`: NeRF's MLP (net_depth_fine x net_width_fine, PE, ReLU density) at the samples' midpoints.
- `MipNeRFOccGrid`: mip-NeRF's MLP (net_depth x net_width, IPE, softplus density, rgb padding) on the
  conical frustums of the marched intervals (mip-NeRF sec. 3.1: each interval `[t_start, t_end]` of a ray
  is cast into the Gaussian of its frustum, exactly as the stratified levels cast theirs).
"""

from __future__ import annotations

import torch

from nerfpipe import encoding, render
from nerfpipe.estimators import (
    OccupancyGrid,
    PackedSamples,
    Padding,
    march_rays,
    packed_composite,
    packed_histogram,
    packed_sum,
    packed_weights,
)
from nerfpipe.models.base import LossFn, RadianceModel, RayBundle, final_outputs, key_iteration, level_key
from nerfpipe.models.fields import RGB_PADDING, NerfField, density_activation

# MLP calls on packed samples are padded to one of a few sizes: with ragged sizes every call would meet a
# new shape, and oneDNN builds a kernel per shape (bfloat16 on CPU: 7x slower than a repeated shape).
MIN_BUCKET = 256


def bucket_rows(n: int) -> int:
    """The padded size of n rows: at least MIN_BUCKET, else n rounded up to a multiple of
    2^(floor(log2 n) - 3) (8 sizes per octave, at most 12.5% padding)."""
    if n <= MIN_BUCKET:
        return MIN_BUCKET
    step = 1 << (n.bit_length() - 4)
    return -(-n // step) * step


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x [n, ...] followed by zero rows up to `rows` (the padded rows' outputs are dropped)."""
    extra = rows - x.shape[0]
    return torch.cat([x, x.new_zeros(extra, *x.shape[1:])]) if extra > 0 else x


def sample_points(packed: PackedSamples, rays: RayBundle) -> torch.Tensor:
    """[S, 3] midpoints `o + t_mid d` of packed samples."""
    t_mid = (packed.t_starts + packed.t_ends) / 2
    return rays.origins[packed.ray_indices] + t_mid[:, None] * rays.directions[packed.ray_indices]


def sample_frustums(packed: PackedSamples, rays: RayBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussians of the packed samples' conical frustums (mip-NeRF sec. 3.1): means, covs [S, 3]."""
    ray = packed.ray_indices
    t = torch.stack([packed.t_starts, packed.t_ends], dim=-1)  # [S, 2]: one interval per row
    means, covs = encoding.cast_rays(t, rays.origins[ray], rays.directions[ray], rays.radii[ray])
    return means[:, 0], covs[:, 0]


class OccGridModel(RadianceModel):
    """One MLP on the samples of an occupancy grid (subclasses choose the field and how samples are cast).

    A training forward with a key first refreshes the grid when its iteration is due (every
    `occ_update_every` iterations; the iteration is read from the key, `key_iteration`), so the training
    loop needs no hook and resuming repeats every update. Then it marches (jitter from the key's stream
    1), evaluates the density of every marched sample without gradients, drops the samples behind which
    the transmittance has fallen below `occ_early_stop_eps`, and renders the rest with the MLP. The grid
    and the sample counts are buffers, so model.pt and resume checkpoints carry them.
    """

    def __init__(self, settings: dict, field: NerfField) -> None:
        super().__init__(settings)
        s = settings
        self.field = field
        self.grid = OccupancyGrid(s["occ_aabb"], s["occ_resolution"], s["occ_threshold"], s["occ_ema_decay"],
                                  s["occ_warmup_iterations"], s["occ_update_every"])
        self.step_size = float(s["occ_step_size"])
        self.early_stop_eps = float(s["occ_early_stop_eps"])
        # Totals over the training forwards: rays, marched samples (in occupied cells), samples whose density
        # was evaluated before the early stop, samples rendered by the MLP.
        self.register_buffer("sample_counts", torch.zeros(4, dtype=torch.int64))

    def clip_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"field": list(self.field.parameters())}

    def sample_stats(self) -> dict[str, float]:
        """Mean samples per training ray so far: marched, density-only evaluations, rendered; and the
        fraction of occupied grid cells now."""
        rays, marched, prepass, rendered = (int(v) for v in self.sample_counts.tolist())
        per = (lambda n: n / rays) if rays else (lambda n: 0.0)
        return {"marched_per_ray": per(marched), "density_per_ray": per(prepass),
                "rendered_per_ray": per(rendered),
                "occupied_fraction": float(self.grid.occupied.float().mean())}

    @property
    def samples_per_ray(self) -> float:
        """MLP evaluations per training ray, mean over training: the density-only evaluations of the early
        stop plus the samples rendered (0 before any training step)."""
        stats = self.sample_stats()
        return round(stats["density_per_ray"] + stats["rendered_per_ray"], 2)

    def cast(self, packed: PackedSamples, rays: RayBundle) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The field's inputs of packed samples: positions [S, 3] and covariances [S, 3] (None: points)."""
        raise NotImplementedError

    def grid_density(self, points: torch.Tensor) -> torch.Tensor:
        """sigma [K] at the grid update's cell points [K, 3]; an IPE field sees each point as the Gaussian
        of a uniform cell-sized box around it (variance `cell^2 / 12` per axis), the scale its training
        frustums have: at zero variance IPE keeps frequencies that training attenuated away (mip-NeRF
        eq. 14), and the density there is noise."""
        if self.field.pos_enc.kind != "ipe":
            return self.query_density(points)
        lo, hi = self.grid.aabb[:3], self.grid.aabb[3:]
        cell_var = ((hi - lo) / self.grid.resolution) ** 2 / 12
        return self.query_density(points, cell_var.to(points.dtype).expand_as(points))

    def query_density(self, points: torch.Tensor, covs: torch.Tensor | None = None) -> torch.Tensor:
        """sigma [K] of the MLP at points [K, 3] (the position branch only; covs [K, 3] the diagonal
        covariances for an IPE field)."""
        f, n = self.field, points.shape[0]
        rows = bucket_rows(n)
        covs = None if covs is None else pad_rows(covs, rows)
        h = f.trunk(f.pos_enc(pad_rows(points, rows), covs))
        return density_activation(f.density_head(h)[..., 0], f.density_kind, f.density_bias)[:n]

    def forward(self, rays: RayBundle, key: int | None, background: torch.Tensor) -> dict:
        if self.training and key is not None and self.grid.due(key_iteration(key)):
            self.grid.update(self.grid_density, key_iteration(key), level_key(key, 1), self.step_size)
        packed = march_rays(rays.origins, rays.directions, rays.near, rays.far, self.grid.occupied,
                            self.grid.aabb, self.grid.resolution, self.step_size,
                            self.training and self.settings["perturb"], level_key(key, 0))
        marched = len(packed)
        prepass = 0
        if self.early_stop_eps > 0 and marched:
            with torch.no_grad():
                sigma = self.query_density(*self.cast(packed, rays))
                _, transmittance = packed_weights(sigma, packed, rays.directions)
            packed = packed.select(transmittance >= self.early_stop_eps)
            prepass = marched
        level = self.render_packed(packed, rays, background, self.normals_for_display)
        if self.training and key is not None:
            with torch.no_grad():
                self.sample_counts += torch.tensor([len(rays), marched, prepass, len(packed)],
                                                   device=self.sample_counts.device)
        return final_outputs([level])

    def render_packed(self, packed: PackedSamples, rays: RayBundle, background: torch.Tensor,
                      want_normals: bool = False) -> dict:
        """Query the MLP on packed samples and volume-render them (nerfpipe.estimators.packed).

        Returns rgb [R, 3], acc [R], depth [R] (normals [R, 3] with want_normals), the level's dense view
        t [R, 2L] / weights [R, 2L - 1] (`packed_histogram`, for the weight profiles) and the packed
        samples (`*_samples` keys: density, rgb, weights [S], ray_indices [S]).
        """
        pad = Padding.of(packed)
        n, rows = len(packed), bucket_rows(len(packed))
        points, covs = self.cast(packed, rays)
        points = pad_rows(points, rows)[:, None, :]
        covs = None if covs is None else pad_rows(covs, rows)[:, None, :]
        viewdirs = pad_rows(rays.viewdirs[packed.ray_indices], rows)
        if want_normals:
            with torch.enable_grad():
                x = points.detach().requires_grad_(True)
                out = self.field(x, covs, viewdirs)
                grad = torch.autograd.grad(out["density"].sum(), x, create_graph=self.training)[0][:n, 0]
        else:
            out = self.field(points, covs, viewdirs)
        density, rgb = out["density"][:n, 0], out["rgb"][:n, 0]
        weights, _ = packed_weights(density, packed, rays.directions, pad)
        level = packed_composite(weights, rgb, packed, rays.near, rays.far, background, pad)
        level["t"], level["weights"] = packed_histogram(packed, weights, rays.near, pad)
        level.update(density_samples=density, rgb_samples=rgb, weights_samples=weights,
                     ray_indices_samples=packed.ray_indices)
        if want_normals:
            normals = render.normals_from_density_grad(grad)
            level["normals_samples"] = normals
            level["normals"] = packed_sum(normals, weights, pad)
        return level

    def loss_terms(self, out: dict, rays: RayBundle, target: torch.Tensor, loss_fn: LossFn) -> dict:
        return {"data": loss_fn(out["rgb"], target)}


class NeRFOccGrid(OccGridModel):
    """NeRF with an occupancy-grid estimator (nerfacc's NeRF example): one NeRF MLP of net_depth_fine x
    net_width_fine at the samples' midpoints; no coarse network, n_samples and n_importance unused."""

    uses_gaussians = False

    def __init__(self, settings: dict) -> None:
        s = settings
        super().__init__(settings, NerfField("pe", s["pe_pos"], s["pe_dir"], s["net_depth_fine"],
                                             s["net_width_fine"], "relu", srgb=s["srgb"]))

    def cast(self, packed: PackedSamples, rays: RayBundle) -> tuple[torch.Tensor, None]:
        return sample_points(packed, rays), None


class MipNeRFOccGrid(OccGridModel):
    """mip-NeRF with an occupancy-grid estimator: mip-NeRF's one MLP (net_depth x net_width, IPE) on the
    conical frustums of the marched intervals; its two sampling levels (n_samples, n_importance) are
    replaced by the grid, so coarse_loss_mult and resample_padding are unused. The grid update queries
    the density of cell-sized Gaussians (`grid_density`)."""

    uses_gaussians = True

    def __init__(self, settings: dict) -> None:
        s = settings
        super().__init__(settings, NerfField("ipe", s["pe_pos"], s["pe_dir"], s["net_depth"], s["net_width"],
                                             "softplus", rgb_padding=RGB_PADDING, srgb=s["srgb"],
                                             density_bias=s["density_bias"]))

    def cast(self, packed: PackedSamples, rays: RayBundle) -> tuple[torch.Tensor, torch.Tensor]:
        return sample_frustums(packed, rays)
