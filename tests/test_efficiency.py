"""The report's efficiency section (nerfpipe.reporting.efficiency): its table against a hand
computation, the figure's axes and series, and its absence when too few variants are measured."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from nerfpipe.reporting import efficiency
from nerfpipe.stages.report import report
from tests.test_report import build_tree, fixture_values

# (scene, variant, seed) -> (samples_per_ray, train_seconds, rays_per_second, psnr). nerf_occ's
# samples are a measured mean (fractional, varying), and scene "b" has only seed 0 of it, so the
# mean over scenes of per-scene means differs from the plain mean over its runs.
RUNS = {
    ("a", "nerf", 0): (192, 100.0, 4000.0, 25.0),
    ("a", "nerf", 1): (192, 104.0, 3900.0, 25.4),
    ("b", "nerf", 0): (192, 110.0, 3800.0, 22.0),
    ("b", "nerf", 1): (192, 112.0, 3700.0, 22.6),
    ("a", "mipnerf360", 0): (96, 80.0, 6000.0, 25.5),
    ("a", "mipnerf360", 1): (96, 82.0, 6100.0, 25.1),
    ("b", "mipnerf360", 0): (96, 90.0, 5900.0, 22.9),
    ("b", "mipnerf360", 1): (96, 86.0, 5800.0, 22.3),
    ("a", "nerf_occ", 0): (30.5, 50.0, 9000.0, 24.0),
    ("a", "nerf_occ", 1): (33.5, 54.0, 8800.0, 24.6),
    ("b", "nerf_occ", 0): (20.0, 40.0, 9500.0, 21.0),
    ("a", "old", 0): (math.nan, 70.0, 5000.0, 24.0),  # samples_per_ray not measured: left out
    ("b", "old", 0): (math.nan, 75.0, 5000.0, 21.0),
}
VARIANTS = ["nerf", "mipnerf360", "nerf_occ", "old"]
KEYS = ("samples_per_ray", "train_seconds", "rays_per_second", "psnr")


def runs_frame(runs: dict = RUNS) -> pd.DataFrame:
    rows = [{"scene": sc, "variant": v, "seed": s, "method": v.split("_")[0],
             **dict(zip(KEYS, vals, strict=True))} for (sc, v, s), vals in runs.items()]
    return pd.DataFrame(rows)


def hand(variant: str, index: int) -> tuple[float, float]:
    """(mean over scenes of the per-scene mean over seeds, std over seeds of the per-seed mean over
    scenes) of one quantity, by hand."""
    runs = {k: vals[index] for k, vals in RUNS.items() if k[1] == variant}
    scenes = sorted({sc for sc, _, _ in runs})
    seeds = sorted({s for _, _, s in runs})
    mean = statistics.fmean(statistics.fmean(x for (sc, _, _), x in runs.items() if sc == scene)
                            for scene in scenes)
    per_seed = [statistics.fmean(x for (_, _, s), x in runs.items() if s == seed) for seed in seeds]
    return mean, statistics.stdev(per_seed)


def test_table_matches_a_hand_computation():
    table = efficiency.efficiency_table(runs_frame(), VARIANTS)
    assert table["variant"].tolist() == ["nerf", "mipnerf360", "nerf_occ"]  # "old" is not measured
    for _, row in table.iterrows():
        for i, key in enumerate(KEYS):
            mean, std = hand(row["variant"], i)
            assert row[key] == pytest.approx(mean, abs=1e-12), (row["variant"], key)
            assert row[f"{key}_std"] == pytest.approx(std, abs=1e-12), (row["variant"], key)
    occ = table.set_index("variant").loc["nerf_occ"]
    assert occ["psnr"] == pytest.approx(((24.0 + 24.6) / 2 + 21.0) / 2)  # not (24 + 24.6 + 21) / 3
    assert (occ["n_scenes"], occ["n_seeds"]) == (2, 2)
    nerf = table.set_index("variant").loc["nerf"]
    texts = [t for t, _ in efficiency.cells(nerf, show_std=True)]
    # a fixed count has no spread; the rest are mean ± std over seeds
    assert texts == ["192", "106.5 ± 2.1", "3,850 ± 71", "23.75 ± 0.35"]
    # a measured mean keeps its decimal (here ((30.5 + 33.5) / 2 + 20) / 2 = 26) and its spread
    assert [t for t, _ in efficiency.cells(occ, show_std=True)][0] == "26.0 ± 5.8"
    assert [t for t, _ in efficiency.cells(nerf, show_std=False)] == ["192", "106.5", "3,850", "23.75"]


def test_absent_when_fewer_than_two_variants_are_measured(tmp_path):
    runs = runs_frame({k: (math.nan if k[1] != "nerf" else v[0], *v[1:]) for k, v in RUNS.items()})
    assert efficiency.write_efficiency(runs, VARIANTS, tmp_path) is None
    assert not (tmp_path / efficiency.FIGURE).exists()
    # a whole report of one variant: no section, no figure, no link in either document
    results = build_tree(tmp_path / "tree", scenes=["lego"], variants=["nerf"], seeds=[0])
    out = tmp_path / "report"
    report(results, out, ["lego"], ["nerf"], [0], "nerf")
    assert "Efficiency" not in (out / "report.md").read_text()
    assert 'id="efficiency"' not in (out / "report.html").read_text()
    assert not (out / efficiency.FIGURE).exists()


def test_figure_is_written_with_its_axes_and_series(tmp_path):
    runs = runs_frame()
    eff = efficiency.write_efficiency(runs, VARIANTS, tmp_path)
    assert eff is not None and eff.figure == "figures/efficiency.png"
    assert (tmp_path / eff.figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = eff.table
    evals, wall = eff.series
    assert evals.variants == wall.variants == ["nerf", "mipnerf360", "nerf_occ"]
    assert (evals.xscale, wall.xscale) == ("log", "linear")
    np.testing.assert_allclose(evals.x, table["samples_per_ray"])
    np.testing.assert_allclose(wall.x, table["train_seconds"])
    for s in (evals, wall):
        np.testing.assert_allclose(s.y, table["psnr"])
        np.testing.assert_allclose(s.yerr, table["psnr_std"])
    # the drawn figure: its axes read back, and the points it plotted equal the series
    fig = efficiency.plot_efficiency(eff.series, {v: "k" for v in VARIANTS}, tmp_path / "again.png")
    axes = fig.get_axes()
    xlabels = ["MLP evaluations per ray (log scale)", "training wall time (s)"]
    assert [ax.get_xlabel() for ax in axes] == xlabels
    assert [ax.get_ylabel() for ax in axes] == ["test PSNR (dB, MSE-based)"] * 2
    assert [ax.get_xscale() for ax in axes] == ["log", "linear"]
    for ax, s in zip(axes, eff.series, strict=True):
        drawn = {c.get_label(): c.lines[0].get_xydata()[0].tolist() for c in ax.containers}
        assert drawn == {v: [x, y] for v, x, y in zip(s.variants, s.x, s.y, strict=True)}
        assert [t.get_text() for t in ax.texts] == s.variants  # each marker labelled by its variant


def test_report_shows_the_section_with_two_measured_variants(tmp_path):
    results = build_tree(tmp_path, scenes=["lego"], variants=["nerf", "mipnerf"], seeds=[0])
    out = tmp_path / "report"
    report(results, out, ["lego"], ["nerf", "mipnerf"], [0], "nerf")
    md = (out / "report.md").read_text()
    section = md.split("## Efficiency")[1].split("## Plots")[0]
    assert md.index("## Paired comparison") < md.index("## Efficiency") < md.index("## Plots")
    for variant in ("nerf", "mipnerf"):  # one seed: no ±; the build_tree fixture has 64 samples per ray
        v = fixture_values("lego", variant, 0)
        row = f"| {variant} | 64 | {v['train_seconds']:.1f} | {v['rays_per_second']:,.0f} | {v['psnr']:.2f} |"
        assert row in section
    assert "](figures/efficiency.png)" in section and (out / "figures" / "efficiency.png").is_file()
    page = (out / "report.html").read_text()
    assert 'id="efficiency-table"' in page and '<a href="#efficiency">' in page
    assert "<code>samples_per_ray</code>" in page
