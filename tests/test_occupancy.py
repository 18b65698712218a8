"""The occupancy-grid estimator (nerfpipe.estimators, `estimator: occgrid`): packed rendering against the
dense renderer, marching against a brute-force march, the grid update on a known density field,
determinism, the config checks, and a tiny nerf_occ training run (kill/resume, PSNR against nerf)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from processes import wait_stopped

from nerfpipe import config as cfgmod
from nerfpipe import render
from nerfpipe.errors import NerfpipeError
from nerfpipe.estimators import (
    OccupancyGrid,
    PackedSamples,
    march_rays,
    packed_composite,
    packed_histogram,
    packed_info_from,
    packed_weights,
)
from nerfpipe.models import RayBundle, build_model
from nerfpipe.random_keys import hash_uniform, key_seeds
from nerfpipe.settings import check_train_settings, weight_settings
from nerfpipe.training import step_key

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"net_depth": 2, "net_width": 32, "net_depth_fine": 2, "net_width_fine": 32, "pe_pos": 4, "pe_dir": 2,
         "occ_resolution": 16}


def occ_settings(method: str = "nerf", **overrides) -> dict:
    return check_train_settings({"method": method, "estimator": "occgrid", **SMALL, **overrides})


def random_rays(n: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32) -> RayBundle:
    """Rays from a sphere of radius 4 towards points near the origin, directions unnormalised."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1) * 4.0
    directions = 0.6 * torch.randn(n, 3, generator=g, dtype=dtype) - origins
    directions = directions / directions.norm(dim=-1, keepdim=True) * 1.3
    return RayBundle(origins, directions, directions / directions.norm(dim=-1, keepdim=True),
                     torch.full((n, 1), 0.01, dtype=dtype), torch.full((n,), 2.0, dtype=dtype),
                     torch.full((n,), 6.0, dtype=dtype))


# ------------------------------------------------------------------ packed rendering == dense rendering


@st.composite
def ragged_samples(draw):
    """Per ray: n >= 0 samples [p_2i, p_2i+1] with gaps between them (zero-width when touching)."""
    lengths = draw(st.lists(st.integers(0, 5), min_size=1, max_size=5))
    seed = draw(st.integers(0, 2**31 - 1))
    touching = draw(st.booleans())
    return lengths, seed, touching


@settings(max_examples=40, deadline=None)
@given(ragged_samples())
def test_packed_rendering_equals_the_dense_renderer(case) -> None:
    """Weights, colour, opacity, depth and their gradients on packed ragged samples equal
    render.compute_weights / render.composite on each ray's dense intervals, where the gaps between
    samples are intervals of zero density."""
    lengths, seed, touching = case
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    n_rays = len(lengths)
    directions = torch.randn(n_rays, 3, generator=g, dtype=f64) + torch.tensor([0.0, 0.0, -2.0], dtype=f64)
    ends, rays_of = [], []
    for r, n in enumerate(lengths):
        p = torch.sort(2 + 4 * torch.rand(2 * n, generator=g, dtype=f64)).values
        if touching:  # contiguous samples: e_i == s_{i+1}
            q = torch.sort(2 + 4 * torch.rand(n + 1, generator=g, dtype=f64)).values
            p = torch.stack([q[:-1], q[1:]], dim=-1).reshape(-1)
        ends.append(p)
        rays_of += [r] * n
    ray = torch.tensor(rays_of, dtype=torch.int64)
    starts = torch.cat([p[0::2] for p in ends]) if rays_of else torch.zeros(0, dtype=f64)
    stops = torch.cat([p[1::2] for p in ends]) if rays_of else torch.zeros(0, dtype=f64)
    packed = PackedSamples(ray, starts, stops, packed_info_from(ray, n_rays))
    density = (3 * torch.rand(len(ray), generator=g, dtype=f64)).requires_grad_(True)
    rgb = torch.rand(len(ray), 3, generator=g, dtype=f64).requires_grad_(True)
    near = torch.stack([p[0] if len(p) else torch.tensor(2.0, dtype=f64) for p in ends])
    far = torch.stack([p[-1] if len(p) else torch.tensor(6.0, dtype=f64) for p in ends])
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=f64)
    weights, _ = packed_weights(density, packed, directions)
    out = packed_composite(weights, rgb, packed, near, far, bg)
    probe = torch.rand(n_rays, 5, generator=g, dtype=f64)
    loss = ((out["rgb"] * probe[:, :3]).sum() + (out["acc"] * probe[:, 3]).sum()
            + (out["depth"] * probe[:, 4]).sum())
    grads = torch.autograd.grad(loss, [density, rgb], allow_unused=True) if len(ray) else (None, None)

    hist_t, hist_w = packed_histogram(packed, weights, near)
    for r, n in enumerate(lengths):
        sel = ray == r
        if n == 0:
            assert out["acc"][r] == 0 and torch.equal(out["rgb"][r], bg) and out["depth"][r] == near[r]
            continue
        # Dense intervals [1, 2n]: the samples, the gaps after them and an empty interval after the last
        # (render.compute_weights needs two intervals or more).
        t = torch.cat([ends[r], ends[r][-1:] + 1])[None]
        d_dense = torch.stack([density[sel], torch.zeros(n, dtype=f64)], -1).reshape(-1).detach()
        c_dense = torch.stack([rgb[sel], torch.zeros(n, 3, dtype=f64)], 1).reshape(-1, 3).detach()
        d_dense.requires_grad_(True)
        c_dense.requires_grad_(True)
        w_dense, _ = render.compute_weights(d_dense[None], t, directions[r:r + 1])
        ref = render.composite(c_dense[None], w_dense, t, bg)
        torch.testing.assert_close(weights[sel], w_dense[0, 0::2], rtol=1e-12, atol=1e-12)
        for key in ("rgb", "acc", "depth"):
            torch.testing.assert_close(out[key][r], ref[key][0], rtol=1e-12, atol=1e-12)
        ref_loss = ((ref["rgb"][0] * probe[r, :3]).sum() + ref["acc"][0] * probe[r, 3]
                    + ref["depth"][0] * probe[r, 4])
        gd, gc = torch.autograd.grad(ref_loss, [d_dense, c_dense])
        torch.testing.assert_close(grads[0][sel], gd[0::2], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grads[1][sel], gc[0::2], rtol=1e-10, atol=1e-12)
        # The dense view for the weight profiles: the same step function.
        torch.testing.assert_close(hist_t[r, :2 * n], ends[r])
        torch.testing.assert_close(hist_w[r, :2 * n - 1], w_dense[0, :-1].detach())
        assert (hist_t[r, 1:] >= hist_t[r, :-1]).all() and hist_w[r, 2 * n - 1:].eq(0).all()


# ------------------------------------------------------------------ marching == brute force


def brute_force_march(rays: RayBundle, occupied: torch.Tensor, aabb: list[float], g: int, step: float,
                      jitter: list[float]) -> list[tuple[int, float, float]]:
    """Every fixed step of every ray, one at a time in Python floats, kept when the cell of its midpoint
    is occupied (the semantics of march_rays, written out)."""
    samples = []
    for r in range(len(rays)):
        o, d = rays.origins[r].tolist(), rays.directions[r].tolist()
        t_in, t_out = -math.inf, math.inf
        for a in range(3):
            if d[a] == 0:
                if not aabb[a] <= o[a] <= aabb[a + 3]:
                    t_in, t_out = math.inf, -math.inf
                continue
            ta, tb = (aabb[a] - o[a]) / d[a], (aabb[a + 3] - o[a]) / d[a]
            t_in, t_out = max(t_in, min(ta, tb)), min(t_out, max(ta, tb))
        t0, t1 = max(float(rays.near[r]), t_in), min(float(rays.far[r]), t_out)
        dt = step / math.sqrt(sum(c * c for c in d))
        j = 0
        while t1 > t0 and j + 1 <= (t1 - t0) / dt - jitter[r]:
            s, e = t0 + (j + jitter[r]) * dt, min(t0 + (j + 1 + jitter[r]) * dt, t1)
            m = (s + e) / 2
            ijk = [min(max(math.floor((o[a] + m * d[a] - aabb[a]) / (aabb[a + 3] - aabb[a]) * g), 0), g - 1)
                   for a in range(3)]
            if occupied[(ijk[0] * g + ijk[1]) * g + ijk[2]]:
                samples.append((r, s, e))
            j += 1
    return samples


@pytest.mark.parametrize("randomized", [False, True])
def test_marching_equals_a_brute_force_march(randomized: bool) -> None:
    g, step, key = 8, 0.15, 12345
    aabb = [-1.5, -1.25, -1.0, 1.5, 1.375, 1.125]  # exact in float32, as the grid keeps it
    rays = random_rays(40, seed=3, dtype=torch.float64)
    rays.directions[0, 2] = 0.0  # a direction parallel to a slab
    rays.origins[1] = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)  # starts inside the box
    rays.directions[2] = -rays.directions[2]  # points away from the box: no samples
    rays.near[3], rays.far[3] = 3.5, 4.2  # near and far cut into the box
    occupied = torch.rand(g**3, generator=torch.Generator().manual_seed(1)) < 0.4
    out = march_rays(rays.origins, rays.directions, rays.near, rays.far, occupied,
                     torch.tensor(aabb), g, step, randomized, key)
    jitter = hash_uniform(key_seeds(key), torch.arange(40)).double().tolist() if randomized else [0.0] * 40
    expected = brute_force_march(rays, occupied, aabb, g, step, jitter)
    assert len(expected) > 50
    got = list(zip(out.ray_indices.tolist(), out.t_starts.tolist(), out.t_ends.tolist(), strict=True))
    assert len(got) == len(expected)
    for (r, s, e), (r2, s2, e2) in zip(got, expected, strict=True):
        assert r == r2 and s == pytest.approx(s2, abs=1e-12) and e == pytest.approx(e2, abs=1e-12)
    assert not (out.ray_indices == 2).any()
    assert (out.t_starts >= rays.near[out.ray_indices]).all()
    assert (out.t_ends <= rays.far[out.ray_indices]).all()
    assert torch.equal(out.packed_info[:, 1], torch.bincount(out.ray_indices, minlength=40))


def test_same_key_same_samples_other_iteration_other_jitter() -> None:
    rays = random_rays(64)
    occupied = torch.ones(16**3, dtype=torch.bool)
    aabb = torch.tensor([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5])
    a, b, c = (march_rays(rays.origins, rays.directions, rays.near, rays.far, occupied, aabb, 16, 0.05, True,
                          k) for k in (step_key(0, 7) + 1, step_key(0, 7) + 1, step_key(0, 8) + 1))
    assert torch.equal(a.t_starts, b.t_starts) and torch.equal(a.ray_indices, b.ray_indices)
    assert not torch.equal(a.t_starts[:100], c.t_starts[:100])
    with pytest.raises(ValueError, match="needs an integer key"):
        march_rays(rays.origins, rays.directions, rays.near, rays.far, occupied, aabb, 16, 0.05, True, None)


# ------------------------------------------------------------------ the grid update


def sphere_of_cells(grid: OccupancyGrid, centre: torch.Tensor, radius: float):
    """A density field constant on each cell: 100 where the cell's centre lies inside the sphere."""
    g, lo, hi = grid.resolution, grid.aabb[:3], grid.aabb[3:]

    def density(x: torch.Tensor) -> torch.Tensor:
        ijk = torch.floor((x - lo) / (hi - lo) * g).clamp(0, g - 1)
        centres = lo + (ijk + 0.5) / g * (hi - lo)
        return 100.0 * ((centres - centre).norm(dim=-1) < radius).float()

    cells = torch.arange(g**3)
    ijk = torch.stack([cells // (g * g), (cells // g) % g, cells % g], -1).float()
    expected = ((lo + (ijk + 0.5) / g * (hi - lo) - centre).norm(dim=-1) < radius)
    return density, expected


def test_grid_update_marks_exactly_the_cells_of_a_sphere_then_follows_the_ema_rule() -> None:
    grid = OccupancyGrid([-1.5] * 3 + [1.5] * 3, 16, threshold=0.01, ema_decay=0.9, warmup_iterations=32,
                         update_every=16)
    assert grid.occupied.all()  # dense until the first update
    density, expected = sphere_of_cells(grid, torch.tensor([0.2, -0.1, 0.3]), 0.8)
    for it in (0, 16):  # warm-up: every cell, twice
        grid.update(density, it, step_key(0, it) + 2, 0.02)
    assert 50 < int(expected.sum()) < 16**3 // 4
    assert torch.equal(grid.occupied, expected)
    assert torch.allclose(grid.occ[expected], torch.tensor(2.0)) and grid.occ[~expected].eq(0).all()
    # After the warm-up: a quarter of the cells uniformly plus (up to) a quarter of the occupied ones.
    moved, expected_moved = sphere_of_cells(grid, torch.tensor([-0.5, 0.4, 0.0]), 0.5)
    before = grid.occ.clone()
    cells = grid.cells_to_update(32, step_key(0, 32) + 2)
    quarter = 16**3 // 4
    assert cells.shape[0] == quarter + int(expected.sum())
    assert grid.occupied[cells[quarter:]].all()
    grid.update(moved, 32, step_key(0, 32) + 2, 0.02)
    chosen = torch.zeros(16**3, dtype=torch.bool)
    chosen[cells] = True
    rule = torch.maximum(0.9 * before, 2.0 * expected_moved.float())
    torch.testing.assert_close(grid.occ[chosen], rule[chosen])
    assert torch.equal(grid.occ[~chosen], before[~chosen])
    assert torch.equal(grid.occupied, grid.occ > torch.clamp(grid.occ.mean(), max=0.01))


def test_grid_update_is_a_function_of_the_key() -> None:
    def run(key: int) -> torch.Tensor:
        torch.manual_seed(0)
        model = build_model(occ_settings()).train()
        model.grid.update(model.query_density, 0, key, 0.02)
        return model.grid.occ.clone()

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------ the model


@pytest.mark.parametrize("method", ["nerf", "mipnerf"])
def test_occgrid_forward_learns_and_is_deterministic(method: str) -> None:
    torch.manual_seed(0)
    model = build_model(occ_settings(method)).train()
    r = random_rays()
    out = model(r, step_key(0, 0), torch.ones(3))
    assert out["rgb"].shape == (32, 3) and out["depth"].shape == (32,) and out["acc"].shape == (32,)
    assert ((out["depth"] >= 2.0) & (out["depth"] <= 6.0)).all() and (out["acc"] <= 1 + 1e-5).all()
    level = out["levels"][0]
    assert level["t"].shape[-1] == level["weights"].shape[-1] + 1
    terms = model.loss_terms(out, r, torch.rand(32, 3), lambda a, b: ((a - b) ** 2).mean())
    assert set(terms) == {"data"}
    terms["data"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    stats = model.sample_stats()
    assert stats["marched_per_ray"] > 0 and model.samples_per_ray == pytest.approx(
        stats["density_per_ray"] + stats["rendered_per_ray"], abs=0.01)
    # same key, same output; eval is deterministic, draws nothing and leaves the counts alone
    counts = model.sample_counts.clone()
    model2 = build_model(occ_settings(method)).train()
    model2.load_state_dict(model.state_dict())
    a = model(r, step_key(0, 1), torch.ones(3))["rgb"]
    assert torch.equal(a, model2(r, step_key(0, 1), torch.ones(3))["rgb"])
    model.eval()
    with torch.no_grad():
        e1, e2 = model(r, None, torch.ones(3)), model(r, None, torch.ones(3))
        halves = [model(r.slice(0, 16), None, torch.ones(3)), model(r.slice(16, 32), None, torch.ones(3))]
    assert torch.equal(e1["rgb"], e2["rgb"]) and e1["normals"].shape == (32, 3)
    torch.testing.assert_close(torch.cat([h["rgb"] for h in halves]), e1["rgb"])
    assert torch.equal(model.sample_counts[0], counts[0] + 32)


def test_mipnerf_grid_updates_query_cell_sized_gaussians() -> None:
    """mip-NeRF's grid update sees each cell point as the Gaussian of a uniform cell-sized box (variance
    cell^2 / 12 per axis): IPE at zero variance keeps the high frequencies that training attenuated."""
    model = build_model(occ_settings("mipnerf")).eval()
    seen = []
    real = model.query_density
    model.query_density = lambda points, covs=None: seen.append(covs) or real(points, covs)
    points = torch.rand(5, 3) - 0.5
    sigma = model.grid_density(points)
    cell = 3.0 / 16  # SMALL: occ_resolution 16 over the default box [-1.5, 1.5]^3
    torch.testing.assert_close(seen[0], torch.full((5, 3), cell**2 / 12))
    assert not torch.allclose(sigma, real(points, torch.zeros(5, 3)))  # the variance changes the answer
    nerf = build_model(occ_settings("nerf")).eval()
    torch.testing.assert_close(nerf.grid_density(points), nerf.query_density(points))


def test_an_empty_grid_renders_the_background_and_still_trains() -> None:
    model = build_model(occ_settings(occ_update_every=1000)).train()
    model.grid.occupied.zero_()
    r = random_rays()
    out = model(r, step_key(0, 1), torch.tensor([0.2, 0.4, 0.6]))
    assert torch.equal(out["rgb"], torch.tensor([0.2, 0.4, 0.6]).expand(32, 3))
    model.loss_terms(out, r, torch.rand(32, 3), lambda a, b: ((a - b) ** 2).mean())["data"].backward()


# ------------------------------------------------------------------ configuration


def test_occgrid_config_is_valid_and_differs_from_nerf_only_in_the_estimator() -> None:
    cfg = cfgmod.load_config(ROOT / "config/occgrid.yaml")
    default = cfgmod.load_config(ROOT / "config/config.yaml")
    assert set(cfg["variants"]) == {"nerf", "nerf_occ", "mipnerf", "mipnerf_occ"}
    for c in (cfg, default):
        assert cfgmod.ablation_diff(c, "nerf_occ") == {"estimator": ("stratified", "occgrid")}
        assert cfgmod.ablation_diff(c, "mipnerf_occ") == {"estimator": ("stratified", "occgrid")}
        assert c["variants"]["nerf_occ"]["base"] == "nerf"
        assert c["variants"]["mipnerf_occ"]["base"] == "mipnerf"
    assert list(cfg["scenes"]) == list(default["scenes"])
    for name in cfg["variants"]:
        settings = cfgmod.resolve_variant(cfg, name)
        assert settings["iterations"] == cfgmod.resolve_variant(default, "nerf")["iterations"]
        assert check_train_settings(json.loads(json.dumps(settings))) == settings
    # The grid's keys determine the weights of an occgrid run only: a stratified run keeps its identity.
    assert "occ_resolution" in weight_settings(cfgmod.resolve_variant(cfg, "nerf_occ"))
    assert not any(k.startswith("occ_") or k == "estimator"
                   for k in weight_settings(cfgmod.resolve_variant(cfg, "nerf")))


@pytest.mark.parametrize("variant", [{"method": "refnerf", "estimator": "occgrid"},
                                     {"base": "prop", "estimator": "occgrid"}])
def test_occgrid_is_refused_for_methods_it_is_not_built_for(variant) -> None:
    cfg = {"scenes": {"s": {"synthetic": "diffuse"}},
           "variants": {"nerf": {"method": "nerf"}, "prop": {"method": "mipnerf360"}, "bad": variant}}
    with pytest.raises(NerfpipeError, match=r"variants\.bad: estimator occgrid is built for method nerf, "):
        cfgmod.validate_config(cfg)
    with pytest.raises(NerfpipeError, match="estimator occgrid is built for method nerf, mipnerf only"):
        check_train_settings({"method": "refnerf", "estimator": "occgrid"})
    with pytest.raises(NerfpipeError, match="occ_aabb"):
        check_train_settings({"method": "nerf", "occ_aabb": [0, 0, 0, 1, -1, 1]})
    with pytest.raises(ValueError, match="occgrid is built for nerf, mipnerf only"):
        build_model({**check_train_settings({"method": "mipnerf360"}), "estimator": "occgrid"})


# ------------------------------------------------------------------ training a tiny nerf_occ

TINY = {"net_depth": 2, "net_width": 32, "net_depth_fine": 2, "net_width_fine": 32, "n_samples": 8,
        "n_importance": 8, "pe_pos": 4, "pe_dir": 2, "batch_size": 128, "log_every": 5, "lr_warmup": 5,
        "occ_resolution": 16, "occ_step_size": 0.05, "occ_update_every": 4, "occ_warmup_iterations": 12}


def tiny_settings(variant: str = "nerf_occ", **overrides) -> dict:
    cfg = cfgmod.load_config(ROOT / "config/occgrid.yaml")
    s = cfgmod.resolve_variant(cfg, variant, seed=0)
    s.update(TINY, scene="tiny")
    s.update(overrides)
    return s


def _train_cmd(tiny_scene, out: Path, settings: dict) -> list[str]:
    return [sys.executable, "-m", "nerfpipe.cli", "train", "--data", str(tiny_scene["data"]), "--rays",
            str(tiny_scene["rays"]), "--out", str(out), "--settings", json.dumps(settings), "--threads", "1"]


def test_sigkill_and_resume_of_nerf_occ_is_bit_identical(tiny_scene, tmp_path) -> None:
    """As tests/test_train.py's test for the other methods: kill nerf_occ between two checkpoints (the
    NERFPIPE_PAUSE_AT_ITERATION failpoint, then SIGKILL) after the grid's warm-up, resume, and get the
    uninterrupted run's weights, grid, sample counts and log bit for bit."""
    settings = tiny_settings(iterations=30, ckpt_every=7)
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(tiny_scene, ref, settings), check=True, capture_output=True)
    out = tmp_path / "killed"
    # Killed at 18, 4 iterations past the checkpoint of 14: the first run has made the warm-up's updates
    # (every cell, iterations 0-8), the resumed one makes the later ones (drawn cells, 16-28).
    env = {**os.environ, "NERFPIPE_PAUSE_AT_ITERATION": "18"}
    proc = subprocess.Popen(_train_cmd(tiny_scene, out, settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        assert wait_stopped(proc), "training never reached iteration 18"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert sorted(p.name for p in (out / "ckpt").glob("ckpt_*.pt"))[-1] == "ckpt_00000014.pt"
    subprocess.run(_train_cmd(tiny_scene, out, settings), check=True, capture_output=True)
    w_ref, w_out = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (ref, out))
    assert {"grid.occ", "grid.occupied", "sample_counts"} <= set(w_ref)
    assert 0 < float(w_ref["grid.occupied"].float().mean()) < 1  # the grid has been refreshed
    assert all(torch.equal(w_ref[k], w_out[k]) for k in w_ref)
    logs = [(d / "train_log.csv").read_text().splitlines() for d in (ref, out)]
    header = logs[0][0].split(",")
    timing = {header.index(c) for c in ("elapsed_s", "rays_per_s")}
    rows = [[[v for i, v in enumerate(line.split(",")) if i not in timing] for line in log] for log in logs]
    assert rows[0] == rows[1]
    summaries = [json.loads((d / "summary.json").read_text()) for d in (ref, out)]
    assert summaries[0]["samples_per_ray"] == summaries[1]["samples_per_ray"] > 0


@pytest.mark.parametrize("base", ["nerf", "mipnerf"])
def test_tiny_occ_variant_reaches_its_bases_psnr(base: str, tiny_scene, tmp_path) -> None:
    from nerfpipe.inference import load_trained, render_view
    from nerfpipe.stages.train import train

    meta = json.loads((tiny_scene["data"] / "meta.json").read_text())
    rgba = torch.from_numpy(np.load(tiny_scene["data"] / "test_rgba.npy"))
    poses = np.load(tiny_scene["data"] / "test_poses.npy")
    psnr = {}
    for variant in (base, f"{base}_occ"):
        out = tmp_path / variant
        summary = train(tiny_scene["data"], tiny_scene["rays"], out, tiny_settings(variant, iterations=200),
                        threads=1, progress=False)
        model, settings = load_trained(out)
        if variant.endswith("_occ"):
            assert summary["samples_per_ray"] == model.samples_per_ray > 0
            assert model.sample_stats()["occupied_fraction"] < 0.5  # the grid has shrunk onto the object
        errors = []
        for i in range(rgba.shape[0]):
            pred = torch.from_numpy(render_view(model, settings, meta, poses[i], 1024)["rgb"])
            target = render.composite_background(rgba[i], render.background_color(settings))
            errors.append(-10 * math.log10(float(((pred - target) ** 2).mean())))
        psnr[variant] = sum(errors) / len(errors)
    # When written: nerf 21.2, nerf_occ 20.8; mipnerf 19.5, mipnerf_occ 19.6 dB.
    assert psnr[f"{base}_occ"] > psnr[base] - 1.0, psnr
