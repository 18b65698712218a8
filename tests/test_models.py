"""Every method on random rays: shapes, level structure, finite losses and gradients,
determinism, and the parts of each paper that are checkable without training."""

from __future__ import annotations

import pytest
import torch

from nerfpipe.models import METHODS, RayBundle, build_model
from nerfpipe.settings import check_train_settings
from nerfpipe.training import data_loss_fn

SMALL = {"net_depth": 2, "net_width": 32, "net_depth_fine": 2, "net_width_fine": 32, "n_samples": 8,
         "n_importance": 8, "prop_samples": [8], "prop_net_depth": 1, "prop_net_width": 16,
         "bottleneck_width": 16, "pe_pos": 4, "pe_dir": 2, "deg_view": 3, "dir_net_depth": 2,
         "dir_net_width": 16}


def settings_for(method: str, **overrides) -> dict:
    """The method's defaults (train_defaults <- METHOD_DEFAULTS) with small networks."""
    return check_train_settings({"method": method, **SMALL, **overrides})


def rays(n: int = 16, seed: int = 0) -> RayBundle:
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 4.0
    target = 0.3 * torch.randn(n, 3, generator=g)
    directions = target - origins
    directions = directions / directions.norm(dim=-1, keepdim=True) * 1.3  # unnormalised on purpose
    viewdirs = directions / directions.norm(dim=-1, keepdim=True)
    return RayBundle(origins, directions, viewdirs, torch.full((n, 1), 0.01), torch.full((n,), 2.0),
                     torch.full((n,), 6.0))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_forward_shapes_and_levels(method: str) -> None:
    torch.manual_seed(0)
    s = settings_for(method)
    model = build_model(s).train()
    r = rays()
    out = model(r, 1 << 4, torch.ones(3))
    assert out["rgb"].shape == (16, 3) and out["depth"].shape == (16,) and out["acc"].shape == (16,)
    assert ((out["rgb"] >= 0) & (out["rgb"] <= 1)).all()
    for level in out["levels"]:
        t, w = level["t"], level["weights"]
        assert t.shape[-1] == w.shape[-1] + 1
        assert (t[:, 1:] >= t[:, :-1]).all(), "endpoints must be sorted"
        assert (t >= 2.0 - 1e-5).all() and (t <= 6.0 + 1e-5).all()
        assert (w.sum(-1) <= 1 + 1e-5).all()
    assert len(out["levels"]) == 2
    if method == "nerf":  # fine level = coarse endpoints + n_importance new samples
        assert out["levels"][1]["t"].shape[-1] == s["n_samples"] + 1 + s["n_importance"]
    if method in ("mipnerf", "refnerf_paper"):
        assert out["levels"][0]["t"].shape[-1] == s["n_samples"] + 1
        assert out["levels"][1]["t"].shape[-1] == s["n_importance"] + 1
    if method in ("mipnerf360", "refnerf"):
        assert out["levels"][0]["t"].shape[-1] == s["prop_samples"][0] + 1
        assert out["levels"][1]["t"].shape[-1] == s["n_importance"] + 1


@pytest.mark.parametrize("method", sorted(METHODS))
def test_losses_finite_and_every_parameter_learns(method: str) -> None:
    torch.manual_seed(0)
    s = settings_for(method, render_normal=False)
    model = build_model(s).train()
    r = rays()
    out = model(r, 3 << 4, torch.zeros(3))
    terms = model.loss_terms(out, r, torch.rand(16, 3), data_loss_fn(s))
    expected = {"nerf": {"data", "data_coarse"}, "mipnerf": {"data", "data_coarse"},
                "mipnerf360": {"data", "interlevel", "distortion"},
                "refnerf": {"data", "interlevel", "distortion", "orientation", "pred_normal"},
                "refnerf_paper": {"data", "data_coarse", "orientation", "pred_normal"}}[method]
    assert set(terms) == expected
    loss = sum(terms.values())
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} receives no gradient"
        assert torch.isfinite(p.grad).all(), name


def test_proposal_net_learns_only_through_interlevel_loss() -> None:
    s = settings_for("mipnerf360", interlevel_weight=0.0, distortion_weight=0.0)
    model = build_model(s).train()
    r = rays()
    out = model(r, 5 << 4, torch.ones(3))
    sum(model.loss_terms(out, r, torch.rand(16, 3), data_loss_fn(s)).values()).backward()
    for p in model.proposals.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_same_key_same_output_and_eval_is_deterministic(method: str) -> None:
    torch.manual_seed(0)
    model = build_model(settings_for(method)).train()
    r = rays()
    a = model(r, 7 << 4, torch.ones(3))["rgb"]
    b = model(r, 7 << 4, torch.ones(3))["rgb"]
    c = model(r, 8 << 4, torch.ones(3))["rgb"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(r, None, torch.ones(3))["rgb"], model(r, None, torch.ones(3))["rgb"])


def test_background_is_composited() -> None:
    """An empty scene renders the background colour exactly."""
    s = settings_for("mipnerf")
    model = build_model(s).eval()
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        model.field.density_head.bias.fill_(-50.0)  # softplus(-51) ~ 0: nothing there
        out = model(rays(), None, torch.tensor([0.2, 0.4, 0.6]))
    assert torch.allclose(out["acc"], torch.zeros(16), atol=1e-6)
    assert torch.allclose(out["rgb"], torch.tensor([0.2, 0.4, 0.6]).expand(16, 3), atol=1e-5)


@pytest.mark.parametrize("method", ["refnerf", "refnerf_paper"])
def test_refnerf_renders_unit_predicted_and_density_normals(method: str) -> None:
    model = build_model(settings_for(method)).eval()
    with torch.no_grad():
        out = model(rays(), None, torch.ones(3))
    level = out["levels"][-1]
    for key in ("normals_samples", "normals_pred_samples"):
        n = level[key].norm(dim=-1)
        assert torch.allclose(n, torch.ones_like(n), atol=1e-4)
    assert out["normals"].shape == (16, 3) and out["normals_pred"].shape == (16, 3)


def test_samples_per_ray() -> None:
    assert build_model(settings_for("nerf")).samples_per_ray == 8 + 16
    assert build_model(settings_for("mipnerf")).samples_per_ray == 16
    assert build_model(settings_for("mipnerf", n_importance=12)).samples_per_ray == 20
    assert build_model(settings_for("mipnerf360")).samples_per_ray == 16
    assert build_model(settings_for("refnerf", n_importance=12)).samples_per_ray == 20
    assert build_model(settings_for("refnerf_paper", n_samples=6)).samples_per_ray == 14
