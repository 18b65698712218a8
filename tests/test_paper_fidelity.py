"""Where nerfpipe follows the papers' reference implementation (multinerf) and the paper configs:
each check against an independent computation (brute force, closed form, or the reference formula
written out again here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfpipe import config as cfgmod
from nerfpipe import ext_backend, losses, metrics, random_keys, render, sampling
from nerfpipe.errors import NerfpipeError
from nerfpipe.models import METHODS, RayBundle, build_model
from nerfpipe.models.base import clip_grad_norms_, train_fraction
from nerfpipe.models.mlp import MLP, default_skip
from nerfpipe.settings import check_train_settings
from nerfpipe.training import data_loss_fn, step_key

F64 = torch.float64
EPS32 = float(np.finfo(np.float32).eps)
SMALL = {"net_depth": 2, "net_width": 16, "net_depth_fine": 2, "net_width_fine": 16, "n_samples": 8,
         "n_importance": 8, "prop_samples": [8], "prop_net_depth": 1, "prop_net_width": 8,
         "bottleneck_width": 8, "pe_pos": 3, "pe_dir": 2, "deg_view": 2, "dir_net_depth": 2,
         "dir_net_width": 8}


def small(method: str, **overrides) -> dict:
    return check_train_settings({"method": method, **SMALL, **overrides})


def rays(n: int = 6, seed: int = 0, dtype: torch.dtype = torch.float32) -> RayBundle:
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1) * 4.0
    directions = 0.3 * torch.randn(n, 3, generator=g, dtype=dtype) - origins
    directions = directions / directions.norm(dim=-1, keepdim=True) * 1.2
    viewdirs = directions / directions.norm(dim=-1, keepdim=True)
    return RayBundle(origins, directions, viewdirs, torch.full((n, 1), 0.01, dtype=dtype),
                     torch.full((n,), 2.0, dtype=dtype), torch.full((n,), 6.0, dtype=dtype))


# ------------------------------------------------------------------------------------ 1. sample counts

# What the paper configs' comments state: intervals per ray of each level (coarse/proposal first).
PAPER_COUNTS = [
    ("blender", "nerf", [64, 64 + 128]),  # "64 coarse + 128 fine samples"
    ("blender", "nerf_softl1", [64, 64 + 128]),
    ("blender", "mipnerf", [128, 128]),  # "128 + 128 samples"
    ("blender", "mipnerf360", [128, 32]),  # "one 128-sample ... proposal level, 32 samples ... NeRF MLP"
    ("blender", "mipnerf360_nodist", [128, 32]),
    ("blender", "refnerf", [128, 128]),  # "128-sample ... proposal level and 128 NeRF-level samples"
    ("blender", "refnerf_paper", [128, 128]),  # "two levels of 128 + 128 samples"
    ("shiny", "mipnerf360", [128, 32]),
    ("shiny", "refnerf", [128, 128]),
    ("shiny", "refnerf_noreflect_loss", [128, 128]),
    ("shiny", "refnerf_paper", [128, 128]),
]


@pytest.mark.parametrize("name, variant, counts", PAPER_COUNTS)
def test_paper_configs_give_the_sample_counts_their_comments_state(name, variant, counts) -> None:
    cfg = cfgmod.load_config(f"config/{name}.yaml")
    settings = cfgmod.resolve_variant(cfg, variant)
    torch.manual_seed(0)
    model = build_model(settings).eval()
    r = rays(2)
    with torch.no_grad():
        out = model(r, None, torch.ones(3))
    assert [lv["weights"].shape[-1] for lv in out["levels"]] == counts
    assert model.samples_per_ray == sum(counts)  # MLP evaluations per ray


def test_every_configured_variant_of_every_shipped_config_builds() -> None:
    for name in ("config", "smoke", "blender", "shiny"):
        cfg = cfgmod.load_config(f"config/{name}.yaml")
        for variant in cfg["variants"]:
            assert cfgmod.resolve_variant(cfg, variant)["method"] in METHODS


@pytest.mark.parametrize("method", ["mipnerf360", "refnerf"])
def test_a_proposal_variant_setting_n_samples_is_refused_by_name(method) -> None:
    cfg = {"scenes": {"s": {"synthetic": "glossy"}}, "report": {"baseline": "v"},
           "variants": {"v": {"method": method, "n_samples": 64}}}
    with pytest.raises(NerfpipeError, match=r"variants\.v\.n_samples.*n_importance"):
        cfgmod.validate_config(cfg)
    cfg["variants"]["v"] = {"method": method, "n_importance": 64}
    cfgmod.validate_config(cfg)


def test_n_importance_sets_the_last_level_of_every_method() -> None:
    for method in METHODS:
        torch.manual_seed(0)
        model = build_model(small(method, n_samples=5, n_importance=7)).eval()
        with torch.no_grad():
            out = model(rays(), None, torch.ones(3))
        fine = out["levels"][-1]["weights"].shape[-1]
        assert fine == (5 + 7 if method == "nerf" else 7), method


# ------------------------------------------------------------------------------------ 2. interlevel scale


def test_interlevel_term_is_the_mean_over_rays_and_intervals() -> None:
    """multinerf: interlevel_loss_mult * sum over proposal levels of mean(lossfun_outer(...))."""
    torch.manual_seed(0)
    s = small("mipnerf360", prop_samples=[6, 5], n_importance=9, interlevel_weight=0.7)
    model = build_model(s).train()
    r = rays()
    out = model(r, step_key(0, 3), torch.ones(3))
    term = model.loss_terms(out, r, torch.rand(6, 3), data_loss_fn(s))["interlevel"]
    *props, final = out["levels"]
    t, w = final["t"].detach().double().numpy(), final["weights"].detach().double().numpy()
    expected = 0.0
    for p in props:
        tp, wp = p["t"].detach().double().numpy(), p["weights"].detach().double().numpy()
        per = np.zeros_like(w)
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                bound = sum(wp[i, k] for k in range(wp.shape[1])
                            if tp[i, k] <= t[i, j + 1] and tp[i, k + 1] >= t[i, j])
                per[i, j] = max(0.0, w[i, j] - bound) ** 2 / (w[i, j] + losses.INTERLEVEL_EPS)
        expected += per.mean()
    assert float(term.detach()) == pytest.approx(0.7 * expected, rel=1e-4, abs=1e-9)


def test_interlevel_loss_by_hand() -> None:
    """One proposal interval of weight 0.1 over three NeRF intervals: every one is violated."""
    t = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=F64)
    w = torch.tensor([[0.2, 0.5, 0.3]], dtype=F64)
    t_prop = torch.tensor([[0.0, 3.0]], dtype=F64)
    w_prop = torch.tensor([[0.1]], dtype=F64)
    loss = losses.interlevel_loss(t, w, t_prop, w_prop)
    by_hand = sum((wi - 0.1) ** 2 / (wi + losses.INTERLEVEL_EPS) for wi in (0.2, 0.5, 0.3)) / 3
    assert float(loss) == pytest.approx(by_hand, rel=1e-12)


# ------------------------------------------------------------------------------------ 3. clipping


def test_per_mlp_clipping_by_hand() -> None:
    torch.manual_seed(0)
    model = build_model(small("nerf"))
    coarse, fine = model.clip_groups()["coarse"], model.clip_groups()["fine"]
    n_coarse, n_fine = sum(p.numel() for p in coarse), sum(p.numel() for p in fine)
    for p in coarse:
        p.grad = torch.full_like(p, 0.3)
    for p in fine:
        p.grad = torch.full_like(p, -0.001)
    max_norm = 0.5
    norm_coarse, norm_fine = 0.3 * math.sqrt(n_coarse), 0.001 * math.sqrt(n_fine)
    model.clip_gradients_(max_norm, "per_mlp")
    # Coarse: scaled to max_norm / (eps + norm); fine: already below max_norm, untouched.
    expected_coarse = 0.3 * max_norm / (EPS32 + norm_coarse)
    assert norm_coarse > max_norm and norm_fine < max_norm
    for p in coarse:
        torch.testing.assert_close(p.grad, torch.full_like(p, expected_coarse), rtol=1e-5, atol=0)
    for p in fine:
        assert torch.equal(p.grad, torch.full_like(p, -0.001))


def test_global_clipping_is_one_norm_over_all_parameters() -> None:
    torch.manual_seed(0)
    model = build_model(small("nerf"))
    params = list(model.parameters())
    for p in params:
        p.grad = torch.full_like(p, 0.3)
    n = sum(p.numel() for p in params)
    model.clip_gradients_(0.5, "global")
    # torch.nn.utils.clip_grad_norm_: factor max_norm / (norm + 1e-6)
    factor = 0.5 / (0.3 * math.sqrt(n) + 1e-6)
    for p in params:
        torch.testing.assert_close(p.grad, torch.full_like(p, 0.3 * factor), rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="grad_clip_mode"):
        model.clip_gradients_(0.5, "per_layer")


def test_clip_grad_norms_returns_norms_and_skips_gradless_groups() -> None:
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([3.0, 0.0, 4.0])
    norms = clip_grad_norms_({"a": [a], "b": [b]}, 1.0)
    assert norms == {"a": pytest.approx(5.0)}
    torch.testing.assert_close(a.grad, torch.tensor([3.0, 0.0, 4.0]) / (EPS32 + 5.0))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_clip_groups_are_the_mlps_and_partition_the_parameters(method) -> None:
    model = build_model(small(method, prop_samples=[6, 4]))
    groups = model.clip_groups()
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    expected = {"nerf": {"coarse", "fine"}, "mipnerf": {"model"}, "refnerf_paper": {"model"},
                "mipnerf360": {"proposal_0", "proposal_1", "nerf"},
                "refnerf": {"proposal_0", "proposal_1", "nerf"}}[method]
    assert set(groups) == expected


def test_training_clips_with_the_configured_mode(tiny_scene, tmp_path, monkeypatch) -> None:
    from nerfpipe.models.base import RadianceModel
    from nerfpipe.stages.train import train

    calls = []
    original = RadianceModel.clip_gradients_

    def spy(self, max_norm, mode="per_mlp"):
        calls.append((max_norm, mode))
        return original(self, max_norm, mode)

    monkeypatch.setattr(RadianceModel, "clip_gradients_", spy)
    for mode in ("per_mlp", "global"):
        s = small("nerf", iterations=2, batch_size=32, grad_clip=1e-3, grad_clip_mode=mode, log_every=1,
                  ckpt_every=2, scene="tiny")
        train(tiny_scene["data"], tiny_scene["rays"], tmp_path / mode, s, threads=1, device="cpu",
              progress=False)
    assert calls == [(1e-3, "per_mlp")] * 2 + [(1e-3, "global")] * 2


# ------------------------------------------------------------------------------------ 4. normal losses


def _orientation_by_hand(w: torch.Tensor, n: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """multinerf: mean over rays of sum_i w_i min(0, n_i . (-d))^2."""
    v = -d
    return (w * torch.clamp_max((n * v[:, None, :]).sum(-1), 0.0) ** 2).sum(-1).mean()


def _pred_normal_by_hand(w: torch.Tensor, n: torch.Tensor, n_pred: torch.Tensor) -> torch.Tensor:
    return (w * (1.0 - (n * n_pred).sum(-1))).sum(-1).mean()


def test_refnerf_normal_losses_reach_the_weights() -> None:
    torch.manual_seed(0)
    s = small("refnerf")
    model = build_model(s).train()
    r = rays()
    out = model(r, step_key(0, 5), torch.ones(3))
    terms = model.loss_terms(out, r, torch.rand(6, 3), data_loss_fn(s))
    final = out["levels"][-1]
    w, n_pred, n = final["weights"], final["normals_pred_samples"], final["normals_samples"]
    # Values: the reference formulas.
    torch.testing.assert_close(terms["orientation"], 0.1 * _orientation_by_hand(w, n_pred, r.viewdirs))
    torch.testing.assert_close(terms["pred_normal"], 3e-4 * _pred_normal_by_hand(w, n, n_pred))
    # Gradient with respect to the weights: d/dw_i = 0.1 max(0, n_i . d)^2 / R (not stopped).
    (grad,) = torch.autograd.grad(terms["orientation"], w, retain_graph=True)
    by_hand = 0.1 * torch.clamp_min((n_pred * r.viewdirs[:, None, :]).sum(-1), 0) ** 2 / w.shape[0]
    torch.testing.assert_close(grad, by_hand.detach())
    (grad,) = torch.autograd.grad(terms["pred_normal"], w)
    torch.testing.assert_close(grad, (3e-4 * (1 - (n * n_pred).sum(-1)) / w.shape[0]).detach())


def test_refnerf_paper_normal_losses_on_both_levels() -> None:
    torch.manual_seed(0)
    s = small("refnerf_paper")
    assert (s["orientation_weight"], s["orientation_coarse_weight"]) == (0.1, 0.01)
    assert (s["pred_normal_weight"], s["pred_normal_coarse_weight"]) == (3e-4, 3e-5)
    model = build_model(s).train()
    r = rays()
    out = model(r, step_key(0, 5), torch.ones(3))
    target = torch.rand(6, 3)
    terms = model.loss_terms(out, r, target, data_loss_fn(s))
    coarse, fine = out["levels"]
    expected_o = sum(m * _orientation_by_hand(lv["weights"], lv["normals_pred_samples"], r.viewdirs)
                     for m, lv in ((0.01, coarse), (0.1, fine)))
    expected_p = sum(m * _pred_normal_by_hand(lv["weights"], lv["normals_samples"],
                                              lv["normals_pred_samples"])
                     for m, lv in ((3e-5, coarse), (3e-4, fine)))
    torch.testing.assert_close(terms["orientation"], expected_o)
    torch.testing.assert_close(terms["pred_normal"], expected_p)
    torch.testing.assert_close(terms["data_coarse"], 0.1 * ((coarse["rgb"] - target) ** 2).mean())
    assert set(terms) == {"data", "data_coarse", "orientation", "pred_normal"}


def test_prop_normal_uses_the_coarse_orientation_weight() -> None:
    torch.manual_seed(0)
    s = small("refnerf", prop_normal=True, orientation_coarse_weight=0.02)
    model = build_model(s).train()
    r = rays()
    out = model(r, step_key(0, 1), torch.ones(3))
    terms = model.loss_terms(out, r, torch.rand(6, 3), data_loss_fn(s))
    prop, final = out["levels"]
    expected = 0.1 * _orientation_by_hand(final["weights"], final["normals_pred_samples"], r.viewdirs) \
        + 0.02 * _orientation_by_hand(prop["weights"], prop["normals_samples"], r.viewdirs)
    torch.testing.assert_close(terms["orientation"], expected)


# ------------------------------------------------------------------------------------ 5. proposal sampling


def test_train_fraction_reads_the_iteration_of_the_step_key() -> None:
    for seed in (0, 3, 12345):
        for it in (0, 1, 499, 999):
            # multinerf: train_frac = clip((step - 1) / (max_steps - 1), 0, 1), step = it + 1
            assert train_fraction(step_key(seed, it), 1000) == pytest.approx(it / 999)
    assert train_fraction(None, 1000) == 1.0


def test_anneal_power_is_schlicks_bias() -> None:
    for x in (0.0, 0.1, 0.5, 0.9, 1.0):
        s = 10.0
        assert render.anneal_power(x, s) == pytest.approx((s * x) / ((s - 1) * x + 1))
    assert render.anneal_power(0.3, 0.0) == 1.0
    assert render.anneal_power(0.5, 1.0) == pytest.approx(0.5)  # slope 1: linear


def test_anneal_weights_are_the_softmax_of_scaled_log_weights() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.sort(torch.rand(3, 9, dtype=F64, generator=g), dim=-1).values
    t[:, 4] = t[:, 3]  # an empty interval
    w = torch.rand(3, 8, dtype=F64, generator=g)
    for power in (0.0, 0.37, 1.0):
        for pad in (0.0, 0.01):
            logits = torch.where(t[:, 1:] > t[:, :-1], power * torch.log(w + pad), -math.inf)
            reference = torch.softmax(logits, dim=-1)
            mine = render.anneal_weights(t, w, power, pad)
            torch.testing.assert_close(mine / mine.sum(-1, keepdim=True), reference)


def _inverse_cdf(bins: np.ndarray, w: np.ndarray, u: np.ndarray, eps: float = sampling.PDF_EPS) -> np.ndarray:
    """sampling.sample_pdf's documented formula at quantiles u, one ray, in numpy."""
    pdf = (w + eps) / (w + eps).sum()
    cdf = np.concatenate([[0.0], np.minimum(np.cumsum(pdf[:-1]), 1.0), [1.0]])
    idx = np.searchsorted(cdf, u, side="right")
    below, above = np.clip(idx - 1, 0, len(w)), np.clip(idx, 0, len(w))
    denom = cdf[above] - cdf[below]
    denom = np.where(denom < eps, 1.0, denom)
    t = bins[below] + (u - cdf[below]) / denom * (bins[above] - bins[below])
    return np.minimum(np.maximum(t, bins[below]), bins[above])


def _max_dilate_reference(t: np.ndarray, w: np.ndarray, d: float, domain=(0.0, 1.0)):
    """multinerf stepfun.max_dilate_weights written out with loops (O(N^2) per ray)."""
    eps = EPS32**2
    p = w / np.maximum(eps, t[1:] - t[:-1])
    t0, t1 = t[:-1] - d, t[1:] + d
    td = np.clip(np.sort(np.concatenate([t, t0, t1])), *domain)
    pd = np.array([max([p[k] for k in range(len(p)) if t0[k] <= x < t1[k]], default=0.0) for x in td[:-1]])
    wd = pd * (td[1:] - td[:-1])
    return td, wd / max(eps, wd.sum())


@pytest.mark.parametrize("n, d", [(1, 0.05), (5, 0.0), (7, 0.02), (16, 0.3), (40, 0.0125)])
def test_max_dilation_matches_the_reference_formula(n, d) -> None:
    rng = np.random.default_rng(n)
    t = np.sort(rng.uniform(0, 1, size=(4, n + 1)), axis=-1)
    t[:, 0], t[:, -1] = 0.0, 1.0
    t[1, 2:4] = t[1, 2] if n > 3 else t[1, 2:4]  # a zero-width interval
    w = rng.uniform(size=(4, n)) ** 3
    w[2] = 0.0
    td, wd = render.max_dilate_weights(torch.from_numpy(t), torch.from_numpy(w), d)
    for i in range(4):
        ref_t, ref_w = _max_dilate_reference(t[i], w[i], d)
        np.testing.assert_allclose(td[i].numpy(), ref_t, atol=0)
        np.testing.assert_allclose(wd[i].numpy(), ref_w, rtol=1e-12, atol=1e-15)


def test_dilation_amount_follows_the_sample_counts() -> None:
    model = build_model(small("mipnerf360", prop_samples=[64, 32]))
    # multinerf: bias + multiplier * (s_far - s_near) / (product of the sample counts so far)
    assert model.dilation(0) == pytest.approx(0.0025 + 0.5 / 64)
    assert model.dilation(1) == pytest.approx(0.0025 + 0.5 / (64 * 32))


def test_single_jitter_shifts_every_quantile_of_a_ray_by_one_offset() -> None:
    r, n, key = 5, 7, 1234
    bins = torch.linspace(0, 1, 11, dtype=F64).expand(r, 11).contiguous()
    weights = torch.ones(r, 10, dtype=F64)  # uniform density on [0, 1]: the inverse cdf is the identity
    t = render.sample_pdf_single_jitter(bins, weights, n, True, key)
    jitter = random_keys.uniform(key, r).to(F64)
    expected = (torch.arange(n, dtype=F64)[None, :] + jitter[:, None]) / n
    torch.testing.assert_close(t, expected)
    # Not randomized: the midpoint quantiles, exactly sampling.sample_pdf's.
    g = torch.Generator().manual_seed(1)
    w = torch.rand(r, 10, dtype=F64, generator=g)
    torch.testing.assert_close(render.sample_pdf_single_jitter(bins, w, n, False),
                               sampling.sample_pdf_torch(bins, w, n, False))


def test_single_jitter_first_level_moves_the_grid_as_a_whole() -> None:
    near, far = torch.full((4,), 2.0, dtype=F64), torch.full((4,), 6.0, dtype=F64)
    t = render.stratified_endpoints_single_jitter(near, far, 8, True, 99)
    u = random_keys.uniform(99, 4).to(F64)
    h = 0.5
    grid = torch.linspace(2.0, 6.0, 9, dtype=F64)
    # Inner endpoints: grid - h/2 + u h; first / last: inside their half cells.
    torch.testing.assert_close(t[:, 1:-1], grid[1:-1] - h / 2 + u[:, None] * h)
    torch.testing.assert_close(t[:, 0], 2.0 + u * h / 2)
    torch.testing.assert_close(t[:, -1], 6.0 - h / 2 + u * h / 2)
    assert torch.equal(render.stratified_endpoints_single_jitter(near, far, 8, False),
                       sampling.stratified_endpoints(near, far, 8, False))


def test_switches_off_give_plain_inverse_transform_sampling() -> None:
    s = small("mipnerf360", prop_anneal_slope=0.0, prop_dilation_multiplier=0.0, prop_dilation_bias=0.0,
              prop_single_jitter=False, sampling_backend="torch")
    ext_backend.set_backend("torch")
    try:
        torch.manual_seed(0)
        model = build_model(s).train()
        r = rays()
        key = step_key(0, 3)
        out = model(r, key, torch.ones(3))
        prop, final = out["levels"]
        t0 = sampling.stratified_endpoints(r.near, r.far, 8, True, key + 1)
        torch.testing.assert_close(prop["t"], t0, rtol=0, atol=0)
        t1 = sampling.sample_pdf(t0, prop["weights"].detach(), 9, True, key + 2)
        torch.testing.assert_close(final["t"], t1, rtol=0, atol=0)
    finally:
        ext_backend.set_backend("auto")


def test_default_resampling_is_annealed_dilated_and_single_jittered() -> None:
    """The NeRF level of mip-NeRF 360 with the defaults, re-derived step by step."""
    s = small("mipnerf360", iterations=100)
    torch.manual_seed(0)
    model = build_model(s).train()
    r = rays(dtype=torch.float32)
    key = step_key(0, 40)
    out = model(r, key, torch.ones(3))
    prop, final = out["levels"]
    u0 = random_keys.uniform(key + 1, 6)
    grid = torch.linspace(2.0, 6.0, 9)
    lower = torch.cat([grid[:1], (grid[1:] + grid[:-1]) / 2])
    upper = torch.cat([(grid[1:] + grid[:-1]) / 2, grid[-1:]])
    torch.testing.assert_close(prop["t"], lower + (upper - lower) * u0[:, None])
    # Dilate in s = (t - 2) / 4 by 0.0025 + 0.5 / 8, drop the outermost endpoints, anneal, resample.
    sdist = ((prop["t"] - 2.0) / 4.0).double().numpy()
    w = prop["weights"].detach().double().numpy()
    power = 10 * (40 / 99) / (9 * (40 / 99) + 1)
    t_new = []
    for i in range(6):
        td, wd = _max_dilate_reference(sdist[i], w[i], 0.0025 + 0.5 / 8)
        td, wd = td[1:-1], wd[1:-1]
        wd = np.where(td[1:] > td[:-1], wd**power, 0.0)
        u = (np.arange(9) + float(random_keys.uniform(key + 2, 6)[i])) / 9
        t_new.append(2.0 + 4.0 * _inverse_cdf(td, wd, u))
    np.testing.assert_allclose(final["t"].detach().numpy(), np.array(t_new), atol=2e-5)


# ------------------------------------------------------------------------------------ 6. refnerf_paper


def test_nerf_skip_connection_feeds_the_sixth_layer() -> None:
    """NeRF fig. 7 / multinerf: the input is concatenated to the fifth layer's activation."""
    assert default_skip(8) == 5 and default_skip(4) is None and default_skip(5) is None
    mlp = MLP(10, 32, 8, default_skip(8))
    fan_in = [layer.in_features for layer in mlp.layers]
    assert fan_in == [10, 32, 32, 32, 32, 42, 32, 32]


def test_refnerf_paper_is_one_mlp_with_the_reference_heads() -> None:
    cfg = cfgmod.load_config("config/blender.yaml")
    s = cfgmod.resolve_variant(cfg, "refnerf_paper")
    model = build_model(s)
    assert [name for name, _ in model.named_children()] == ["field"]
    field = model.field
    assert [layer.out_features for layer in field.trunk.layers] == [256] * 8
    assert [layer.out_features for layer in field.dir_mlp.layers] == [128] * 8
    assert field.dir_mlp.skip == 5 and field.trunk.skip == 5
    assert field.pos_enc.num_freqs == 16 and field.deg_view == 5 and field.bottleneck.out_features == 128
    # With every weight 0: density softplus(0 + 0.5); diffuse sigmoid(-log 3) = 1/4, tint 1/2,
    # specular 1/2 -> linear 1/2 -> sRGB, clipped, padded by 0.001.
    small_s = small("refnerf_paper")
    m = build_model(small_s).eval()
    for p in m.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        out = m(rays(3), None, torch.ones(3))
    level = out["levels"][0]
    # Zero weights give zero density gradient, so no normals; density and colour are still defined.
    srgb = 1.055 * 0.5 ** (1 / 2.4) - 0.055
    rgb = srgb * 1.002 - 0.001
    torch.testing.assert_close(level["rgb_samples"], torch.full_like(level["rgb_samples"], rgb))
    delta = (level["t"][:, 1:] - level["t"][:, :-1]) * 1.2
    alpha = 1 - torch.exp(-math.log1p(math.exp(0.5)) * delta)
    trans = torch.cumprod(torch.cat([torch.ones(3, 1), 1 - alpha[:, :-1]], dim=-1), dim=-1)
    torch.testing.assert_close(level["weights"], alpha * trans, rtol=1e-5, atol=1e-6)


def test_refnerf_paper_resamples_from_padded_weights() -> None:
    s = small("refnerf_paper", sampling_backend="torch")
    ext_backend.set_backend("torch")
    try:
        torch.manual_seed(0)
        model = build_model(s).train()
        r = rays()
        key = step_key(0, 2)
        out = model(r, key, torch.ones(3))
        coarse, fine = out["levels"]
        t1 = sampling.sample_pdf(coarse["t"], coarse["weights"].detach() + 0.01, 9, True, key + 2)
        torch.testing.assert_close(fine["t"], t1, rtol=0, atol=0)
    finally:
        ext_backend.set_backend("auto")


# ------------------------------------------------------------------------------------ 7. normal benchmark


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def test_shiny_blender_normal_pngs_are_loaded_and_downscaled(tmp_path) -> None:
    from nerfpipe.data.blender import load_blender_split

    root = tmp_path / "scene"
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = []
    normal_pngs, alphas = [], []
    for i in range(2):
        rgba = rng.integers(0, 256, size=(4, 4, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        rgba[0, :, 3] = 0  # background row
        normal = rng.integers(0, 256, size=(4, 4, 4), dtype=np.uint8)
        _write_png(root / "train" / f"r_{i}.png", rgba)
        _write_png(root / "train" / f"r_{i}_normal.png", normal)
        normal_pngs.append(normal)
        alphas.append(rgba[..., 3])
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": np.eye(4).tolist()})
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    split = load_blender_split(root, "train")
    assert split.depth is None and split.normals is not None
    for i in range(2):
        # multinerf: normal_image[..., :3] * 2 / 255 - 1; background (alpha 0) is 0 here.
        expected = normal_pngs[i][..., :3].astype(np.float64) * 2 / 255 - 1
        expected[alphas[i] == 0] = 0.0
        np.testing.assert_allclose(split.normals[i], expected, atol=1e-6)
    half = load_blender_split(root, "train", downscale=2)
    n = normal_pngs[0][..., :3].astype(np.float64) * 2 / 255 - 1
    block = n[2:4, 0:2].reshape(-1, 3).mean(0)  # a block without background
    np.testing.assert_allclose(half.normals[0, 1, 0], block / np.linalg.norm(block), atol=1e-5)
    top = n[1, 0:2].mean(0)  # the top-left block: only its second row is foreground
    np.testing.assert_allclose(half.normals[0, 0, 0], top / np.linalg.norm(top), atol=1e-5)
    # A split where one frame lacks its normal PNG has no normals.
    (root / "train" / "r_1_normal.png").unlink()
    assert load_blender_split(root, "train").normals is None


def test_evaluate_weights_normal_mae_and_records_the_training_eps(tiny_scene, tmp_path, monkeypatch) -> None:
    from nerfpipe.stages.evaluate import evaluate
    from nerfpipe.stages.train import train

    s = small("nerf", iterations=2, batch_size=32, loss="softl1", softl1_eps=0.02, log_every=1, ckpt_every=2,
              scene="tiny")
    train(tiny_scene["data"], tiny_scene["rays"], tmp_path / "train", s, threads=1, device="cpu",
          progress=False)
    seen_eps, seen_weights = [], []
    real_softl1, real_mae = metrics.psnr_softl1, metrics.weighted_normal_mae_deg

    def softl1_spy(pred, gt, eps):
        seen_eps.append(eps)
        return real_softl1(pred, gt, eps)

    def mae_spy(pred, gt, weights):
        seen_weights.append(np.array(weights))
        return real_mae(pred, gt, weights)

    monkeypatch.setattr(metrics, "psnr_softl1", softl1_spy)
    monkeypatch.setattr(metrics, "weighted_normal_mae_deg", mae_spy)
    result = evaluate(tiny_scene["data"], tmp_path / "train", tmp_path / "eval", threads=1, device="cpu")
    assert seen_eps == [0.02, 0.02] and result["softl1_eps"] == 0.02
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["softl1_eps"] == 0.02
    gt_alpha = np.load(tiny_scene["data"] / "test_rgba.npy")[..., 3]
    assert len(seen_weights) == 2
    for i, w in enumerate(seen_weights):
        assert w.shape == gt_alpha[i].shape
        assert np.all(w[gt_alpha[i] == 0] == 0) and np.all(w <= gt_alpha[i] + 1e-6)
    assert result["normal_mae_deg"] is not None and result["normal_mae_unweighted_deg"] is not None
