"""The report's reproduction of mip-NeRF 360's figures: the ablation mechanism, the weight data
behind the distillation plot (from a trained model), the spread number, and the report section."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfpipe import cli
from nerfpipe import config as cfgmod
from nerfpipe import figures_repro as repro
from nerfpipe.diagnostics import weight_profiles
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import read_json, write_json
from nerfpipe.models import RayBundle, build_model
from nerfpipe.stages.report import report
from nerfpipe.training import data_loss_fn
from tests.test_report import build_tree, check_golden, weight_fixture

# ---------------------------------------------------------------------------- ablation mechanism


def test_ablation_variant_changes_exactly_the_named_option():
    cfg = cfgmod.load_config("config/config.yaml")
    base = cfgmod.resolve_variant(cfg, "mipnerf360")
    ablation = cfgmod.resolve_variant(cfg, "mipnerf360_nodist")
    assert set(base) == set(ablation)
    differing = {k for k in base if base[k] != ablation[k]}
    assert differing == {"variant", "distortion_weight"}
    assert ablation["distortion_weight"] == 0.0 and base["distortion_weight"] > 0.0
    assert cfgmod.ablation_diff(cfg, "mipnerf360_nodist") == {
        "distortion_weight": (base["distortion_weight"], 0.0)
    }
    # the report's own diff of two runs' saved settings ignores what names a run
    assert repro.settings_diff(base, ablation) == {"distortion_weight": (base["distortion_weight"], 0.0)}
    assert cfgmod.ablation_diff(cfg, "mipnerf360") == {}


# ---------------------------------------------------------------------------- spread


def test_spread_of_a_delta_is_zero():
    t = np.linspace(2.0, 6.0, 9)
    for i in range(8):
        w = np.zeros(8)
        w[i] = 0.7
        assert repro.weight_spread(t, w) == pytest.approx(0.0, abs=1e-12)


def test_spread_two_bins_by_hand():
    t = [0.0, 1.0, 3.0]  # midpoints 0.5 and 2
    w = [0.2, 0.6]
    mean = (0.2 * 0.5 + 0.6 * 2.0) / 0.8  # 1.625
    var = (0.2 * (0.5 - mean) ** 2 + 0.6 * (2.0 - mean) ** 2) / 0.8  # 0.421875
    assert repro.weight_spread(t, w) == pytest.approx(math.sqrt(var), rel=1e-12)
    assert repro.weight_spread(t, w) == pytest.approx(math.sqrt(0.421875), rel=1e-12)
    # only the shape of the weights matters, not their total
    assert repro.weight_spread(t, [0.05, 0.15]) == pytest.approx(math.sqrt(0.421875), rel=1e-12)


def test_spread_matches_weighted_std_and_empty_ray_is_nan():
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = np.sort(rng.uniform(2.0, 6.0, 13))
        w = rng.uniform(0.0, 1.0, 12)
        w *= rng.uniform(0.1, 1.0) / w.sum()
        mid = 0.5 * (t[1:] + t[:-1])
        ref = math.sqrt(float(np.cov(mid, aweights=w, ddof=0)))
        assert repro.weight_spread(t, w) == pytest.approx(ref, rel=1e-9)
    assert math.isnan(repro.weight_spread([2.0, 3.0, 4.0], [0.0, 0.0]))
    prof = {"rays": [{"levels": [{"t": [0.0, 1.0, 3.0], "w": [0.2, 0.6]}]},
                     {"levels": [{"t": [0.0, 1.0, 3.0], "w": [0.0, 0.0]}]},
                     {"levels": [{"t": [0.0, 1.0, 3.0], "w": [0.5, 0.0]}]}]}
    assert repro.concentration(prof) == pytest.approx(math.sqrt(0.421875) / 2)  # empty ray left out


def test_interval_density_round_trip_and_empty_interval():
    t = np.array([2.0, 2.5, 2.5, 4.0, 6.0])
    w = np.array([0.1, 0.0, 0.6, 0.2])
    d = repro.interval_density(t, w)
    np.testing.assert_allclose(d, [0.2, 0.0, 0.4, 0.1])
    np.testing.assert_allclose(d * np.diff(t), w)


# ---------------------------------------------------------------------------- from a trained model


def _random_rays(n: int, seed: int) -> RayBundle:
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 4.0
    directions = 0.3 * torch.randn(n, 3, generator=g) - origins
    directions = directions / directions.norm(dim=-1, keepdim=True) * 1.3  # unnormalised on purpose
    viewdirs = directions / directions.norm(dim=-1, keepdim=True)
    return RayBundle(origins, directions, viewdirs, torch.full((n, 1), 0.01), torch.full((n,), 2.0),
                     torch.full((n,), 6.0))


@pytest.fixture(scope="module")
def trained_profiles():
    """weights.json data of a tiny mip-NeRF 360 (smoke settings) after a few training steps."""
    torch.manual_seed(0)
    cfg = cfgmod.load_config("config/smoke.yaml")
    settings = cfgmod.resolve_variant(cfg, "mipnerf360")
    model = build_model(settings).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    loss_fn = data_loss_fn(settings)
    target = torch.tensor([0.8, 0.3, 0.1])
    for step in range(8):
        rays = _random_rays(64, step)
        out = model(rays, step << 4, torch.ones(3))
        loss = sum(model.loss_terms(out, rays, target.expand(64, 3), loss_fn).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    model.eval()
    c2w = torch.eye(4)
    c2w[2, 3] = 4.0  # at z = 4 looking down -z at the origin
    meta = {"height": 6, "width": 6, "focal": 8.0, "near": 2.0, "far": 6.0}
    return weight_profiles(model, settings, meta, c2w, [(0, 0), (2, 3), (3, 3), (5, 1)]), settings


def test_profile_levels_sum_to_acc_and_bound(trained_profiles):
    prof, settings = trained_profiles
    assert prof["method"] == "mipnerf360" and len(prof["rays"]) == 4
    for ray in prof["rays"]:
        names = [lv["name"] for lv in ray["levels"]]
        assert names == [f"proposal {i}" for i in range(len(settings["prop_samples"]))] + ["nerf"]
        nerf = repro.nerf_level(ray)
        assert len(nerf["w"]) == settings["n_importance"]
        assert sum(nerf["w"]) == pytest.approx(ray["acc"], abs=1e-5)
        for lv in repro.proposal_levels(ray):
            assert sum(lv["w"]) <= 1.0 + 1e-6
            assert min(lv["w"]) >= 0.0
        for lv in ray["levels"]:
            t, w = np.asarray(lv["t"]), np.asarray(lv["w"])
            assert np.all(np.diff(t) >= 0)
            dens = repro.interval_density(t, w)
            np.testing.assert_allclose(dens * np.diff(t), w, rtol=1e-6, atol=1e-9)
            assert (dens * np.diff(t)).sum() == pytest.approx(w.sum(), abs=1e-6)


def test_distillation_figure_draws_the_densities(trained_profiles):
    prof, _ = trained_profiles
    fig = repro.figure_distillation(prof, "test")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(prof["rays"])
    for ax, ray in zip(axes, prof["rays"], strict=True):
        steps = [p for p in ax.patches if hasattr(p, "get_data")]
        assert len(steps) == len(ray["levels"])  # the proposal levels first, then the NeRF
        for step, lv in zip(steps, ray["levels"], strict=True):
            data = step.get_data()
            np.testing.assert_allclose(data.edges, lv["t"])
            np.testing.assert_allclose(data.values * np.diff(lv["t"]), lv["w"], rtol=1e-6, atol=1e-9)
        assert "weight / interval length" in ax.get_ylabel()


def test_ablation_weight_figure_pairs_rays():
    base = weight_fixture("mipnerf360", "a", width=0.2)
    abl = weight_fixture("mipnerf360", "b", width=0.6)
    fig = repro.figure_ablation_weights(base, abl, "a", "b", "test")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4
    for ax, rb, ra in zip(axes, base["rays"], abl["rays"], strict=True):
        steps = [p for p in ax.patches if hasattr(p, "get_data")]
        assert len(steps) == 2
        np.testing.assert_allclose(steps[0].get_data().values, rb["levels"][-1]["w"])
        np.testing.assert_allclose(steps[1].get_data().values, ra["levels"][-1]["w"])


def test_bad_weights_file_is_named(tmp_path):
    path = tmp_path / "weights.json"
    with pytest.raises(NerfpipeError, match=re.escape(str(path))):
        repro.read_weight_profiles(path)
    bad = weight_fixture("refnerf", "refnerf")
    bad["rays"][1]["levels"][1]["w"].pop()
    write_json(path, bad)
    with pytest.raises(NerfpipeError, match=r"rays\[1\]\.levels\[1\]: expected t of length len\(w\) \+ 1"):
        repro.read_weight_profiles(path)
    write_json(path, weight_fixture("refnerf", "refnerf"))
    with pytest.raises(NerfpipeError, match="variant is 'refnerf', expected 'nerf'"):
        repro.read_weight_profiles(path, "nerf")


# ---------------------------------------------------------------------------- the report section

SCENES = ["lego"]
SEEDS = [0, 1]
ABLATION, BASE = "refnerf_nodist", "refnerf"
VARIANTS = ["nerf", BASE, ABLATION]
D_PSNR = -0.5
WIDE, NARROW = 0.6, 0.2  # fixture weight widths without and with the regulariser


def _add_ablation_runs(results: Path) -> None:
    """Copy every refnerf run to refnerf_nodist: PSNR D_PSNR lower, no distortion loss, wider weights."""
    for scene in SCENES:
        for seed in SEEDS:
            for stage in ("train", "eval", "render"):
                src = results / stage / scene / BASE / f"seed{seed}"
                dst = results / stage / scene / ABLATION / f"seed{seed}"
                shutil.copytree(src, dst)
                for name in ("summary.json", "metrics.json", "config.json"):
                    if (dst / name).is_file():
                        data = read_json(dst / name)
                        data["variant"] = ABLATION
                        if name == "metrics.json":
                            data["psnr"] += D_PSNR
                        if name == "config.json":
                            data["distortion_weight"] = 0.0
                        write_json(dst / name, data)
            write_json(results / "eval" / scene / ABLATION / f"seed{seed}" / "weights.json",
                       weight_fixture("refnerf", ABLATION, width=WIDE))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    results = build_tree(root, scenes=SCENES, variants=["nerf", BASE], seeds=SEEDS)
    _add_ablation_runs(results)
    out = root / "report"
    settings = {"scenes": SCENES, "variants": VARIANTS, "seeds": SEEDS, "baseline": "nerf",
                "ablations": {ABLATION: BASE}}
    # through the CLI, as the workflow calls it
    assert cli.main(["report", "--results", str(results), "--out", str(out), "--settings",
                     json.dumps(settings)]) == 0
    return results, out


def _expected_spread(width: float) -> float:
    prof = weight_fixture("refnerf", "x", width=width)
    spreads = []
    for ray in prof["rays"]:
        t, w = np.asarray(ray["levels"][-1]["t"]), np.asarray(ray["levels"][-1]["w"])
        mid = 0.5 * (t[1:] + t[:-1])
        spreads.append(math.sqrt(float(np.cov(mid, aweights=w, ddof=0))))
    return float(np.mean(spreads))


def test_report_ablation_table(built):
    _, out = built
    with open(out / "ablations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(SCENES)
    row = rows[0]
    assert (row["ablation"], row["base"], int(row["n_pairs"])) == (ABLATION, BASE, len(SEEDS))
    assert float(row["d_psnr"]) == pytest.approx(D_PSNR)
    assert float(row["d_ssim"]) == pytest.approx(0.0, abs=1e-12)
    assert row["changes"] == "distortion_weight: 0.01 → 0.0"
    assert float(row["spread_base"]) == pytest.approx(_expected_spread(NARROW), rel=1e-9)
    assert float(row["spread_ablation"]) == pytest.approx(_expected_spread(WIDE), rel=1e-9)
    assert float(row["spread_ablation"]) > float(row["spread_base"])
    with open(out / "concentration.csv", newline="") as f:
        conc = list(csv.DictReader(f))
    assert {(r["variant"], int(r["seed"])) for r in conc} == {(v, s) for v in (BASE, ABLATION) for s in SEEDS}


def test_report_markdown_section(built):
    _, out = built
    md = (out / "report.md").read_text()
    assert "## Reproducing the original's figures" in md
    section = md.split("## Reproducing the original's figures")[1].split("## Runs")[0]
    assert "### Distortion-regulariser ablation" in section and "### Proposal-network distillation" in section
    line = next(ln for ln in section.splitlines() if ln.startswith(f"| lego | {ABLATION} | {BASE} |"))
    assert "distortion_weight: 0.01 → 0.0" in line and "| -0.50 |" in line
    links = re.findall(r"\]\(([^)]+)\)", section)
    stem = f"lego_{ABLATION}_vs_{BASE}_seed{SEEDS[0]}"
    assert set(links) == {
        f"figures/ablation_views_{stem}.png",
        f"figures/ablation_weights_{stem}.png",
        f"figures/distillation_lego_{BASE}_seed{SEEDS[0]}.png",
        f"figures/distillation_lego_{ABLATION}_seed{SEEDS[0]}.png",
    }
    for rel in re.findall(r"\]\(([^)]+)\)", md):
        assert (out / rel).is_file(), rel
    for rel in links:
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "orbit rgb" in md  # the orbit GIFs are still linked


def test_report_html_shows_the_figures(built):
    _, out = built
    page = (out / "report.html").read_text()
    assert "Reproducing the original&#39;s figures" in page  # escaped by the template
    section = page.split('id="reproduction"')[1].split('<h2 id="runs">')[0]
    figures = re.findall(r'<img class="plot" src="([^"]+)"', section)
    assert len(figures) == 4  # ablation views and weights, two distillation figures
    for src in figures:  # small ones embedded, the rest linked beside the page
        assert src.startswith("data:image/png;base64,") or (out / src).read_bytes()[:4] == b"\x89PNG"
    assert 'id="ablations"' in section and 'id="concentration"' in section
    renders = page.split('<h2 id="renders">')[1].split('id="reproduction"')[0]
    gifs = re.findall(r'<img class="gif px" src="([^"]+)"', renders)
    assert len(gifs) == len(VARIANTS) * 3  # orbit rgb, depth and normals, linked
    assert all((out / src).read_bytes()[:3] == b"GIF" for src in gifs)


def test_report_outputs_equal_the_golden_copies(built):
    _, out = built
    check_golden(out, "ablation")


def test_report_rejects_unknown_ablation(built):
    results, out = built
    with pytest.raises(NerfpipeError, match="ablations: base 'mipnerf' is not one of the variants"):
        report(results, out / "x", SCENES, VARIANTS, SEEDS, "nerf", {ABLATION: "mipnerf"})


def test_report_names_missing_weights(built, tmp_path):
    results, _ = built
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    missing = copy / "eval" / "lego" / ABLATION / "seed1" / "weights.json"
    missing.unlink()
    with pytest.raises(NerfpipeError, match=re.escape(str(missing))):
        report(copy, tmp_path / "out", SCENES, VARIANTS, SEEDS, "nerf", {ABLATION: BASE})
