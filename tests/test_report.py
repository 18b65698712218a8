"""The report stage builds from a fixture results tree and its numbers match the fixtures."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from nerfpipe import cli
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import save_png, write_json, write_text
from nerfpipe.layout import REPORT_DIRS, REPORT_FILES, STAGE_MARKER, run_dir
from nerfpipe.reporting import (
    RUN_FILES,
    check_manifest,
    collect,
    manifest_from_config,
    manifest_from_inputs,
    manifest_from_results,
)
from nerfpipe.stages.report import build_report, report
from nerfpipe.video import render_orbit

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "config" / "smoke.yaml"

SCENES = ["lego", "shiny"]
VARIANTS = ["nerf", "mipnerf", "refnerf"]
SEEDS = [0, 1, 2]
BASELINE = "nerf"
LPIPS_NOTE = "lpips package not installed"
H, W = 12, 16
N_FRAMES = 4

# Designed so the best PSNR differs between scenes (mipnerf on lego, refnerf on shiny) and
# the best LPIPS (lower) is mipnerf on both; refnerf has no LPIPS, nerf no normal error.
PSNR_BASE = {
    ("lego", "nerf"): 25.0,
    ("lego", "mipnerf"): 27.0,
    ("lego", "refnerf"): 26.0,
    ("shiny", "nerf"): 22.0,
    ("shiny", "mipnerf"): 23.0,
    ("shiny", "refnerf"): 25.5,
}


def fixture_values(scene: str, variant: str, seed: int) -> dict:
    """Deterministic metric values of one fixture run."""
    k = SCENES.index(scene) * 100 + VARIANTS.index(variant) * 10 + seed
    wiggle = ((k * 37) % 11 - 5) / 10.0  # in [-0.5, 0.5], distinct per run
    psnr = PSNR_BASE[(scene, variant)] + wiggle
    softl1 = psnr - 9.0 - 0.1 * seed
    return {
        "psnr": psnr,
        "psnr_softl1": softl1,
        "psnr_gap": psnr - softl1,
        "ssim": 0.8 + 0.01 * VARIANTS.index(variant) + 0.001 * seed,
        "lpips": None if variant == "refnerf" else 0.2 - 0.05 * (variant == "mipnerf") + 0.002 * seed,
        "normal_mae_deg": None if variant == "nerf" else 20.0 + 3 * SCENES.index(scene) - seed,
        "train_seconds": 100.0 + 10 * VARIANTS.index(variant) + seed,
        "rays_per_second": 5000.0 + 100 * seed,
        "n_params": 1000 * (1 + VARIANTS.index(variant)),
    }


PROPOSAL_METHODS = ("mipnerf360", "refnerf")
FIXTURE_ACC = 0.9  # rendered opacity of every fixture ray


def weight_fixture(method: str, variant: str, width: float = 0.2, n_rays: int = 4) -> dict:
    """A weights.json (nerfpipe.diagnostics layout): per ray a Gaussian bump of NeRF weights at
    t = 3 + 0.5 * ray of standard deviation `width` on 16 even intervals over [2, 6], summing to
    FIXTURE_ACC; the first level (proposal or coarse) has 8 intervals, each holding the two NeRF
    intervals inside it, so it bounds the NeRF weights exactly."""
    t = np.linspace(2.0, 6.0, 17)
    mid = 0.5 * (t[1:] + t[:-1])
    rays = []
    for r in range(n_rays):
        w = np.exp(-0.5 * ((mid - (3.0 + 0.5 * r)) / width) ** 2)
        w = FIXTURE_ACC * w / w.sum()
        first = "proposal 0" if method in PROPOSAL_METHODS else "coarse"
        last = "nerf" if method in PROPOSAL_METHODS else "fine"
        rays.append({
            "pixel": [r, 2 * r],
            "acc": float(w.sum()),
            "levels": [
                {"name": first, "t": t[::2].tolist(), "w": w.reshape(8, 2).sum(1).tolist()},
                {"name": last, "t": t.tolist(), "w": w.tolist()},
            ],
        })
    return {"method": method, "variant": variant, "rays": rays}


def _fake_render(c2w):
    t = float(c2w[0, 3])
    rgb = np.zeros((H, W, 3), np.float32)
    rgb[..., 0] = t
    rgb[: H // 2, :, 2] = 1.0 - t
    depth = np.full((H, W), 2.0 + 4.0 * t, np.float32)
    acc = np.ones((H, W), np.float32)
    normals = np.zeros((H, W, 3), np.float32)
    normals[..., 2] = 1.0
    return {"rgb": rgb, "depth": depth, "acc": acc, "normals": normals}


def build_tree(root: Path, scenes=SCENES, variants=VARIANTS, seeds=SEEDS, values=fixture_values,
               method=lambda variant: variant) -> Path:
    """Write a complete results tree (train, eval, render) for every run: `values(scene, variant,
    seed)` gives its metrics (fixture_values' keys), `method(variant)` its method."""
    results = root / "results"
    media = root / "media"
    poses = np.tile(np.eye(4, dtype=np.float32), (N_FRAMES, 1, 1))
    poses[:, 0, 3] = np.linspace(0.0, 1.0, N_FRAMES)
    render_orbit(_fake_render, poses, media, near=2.0, far=6.0, fps=8)
    for scene in scenes:
        for variant in variants:
            rank = VARIANTS.index(variant) if variant in VARIANTS else variants.index(variant)
            for seed in seeds:
                v = values(scene, variant, seed)
                rel = Path(scene) / variant / f"seed{seed}"
                train, ev, ren = results / "train" / rel, results / "eval" / rel, results / "render" / rel
                write_json(
                    train / "summary.json",
                    {
                        "scene": scene,
                        "variant": variant,
                        "method": method(variant),
                        "seed": seed,
                        "iterations": 50,
                        "train_seconds": v["train_seconds"],
                        "rays_per_second": v["rays_per_second"],
                        "n_params": v["n_params"],
                        "final_loss": 0.01,
                        "backend": "torch",
                        "skipped_steps": 0,
                        "samples_per_ray": 64,
                    },
                )
                it = np.arange(0, 50, 10)
                log = pd.DataFrame(
                    {
                        "iteration": it,
                        "elapsed_s": it * (0.1 + 0.05 * rank),
                        "lr": 5e-4,
                        "loss": 0.1 / (1 + it) ** (1 + 0.2 * rank),
                        "mse": 0.1 / (1 + it),
                        "psnr": 10 + np.log1p(it) + rank,
                        "rays_per_s": 5000.0,
                        "loss_interlevel": 0.0,
                    }
                )
                write_text(train / "train_log.csv", log.to_csv(index=False))
                write_json(train / "config.json", {"variant": variant, "method": method(variant),
                                                   "seed": seed, "iterations": 50,
                                                   "distortion_weight": 0.01})
                write_json(ev / "weights.json", weight_fixture(method(variant), variant))
                write_json(
                    ev / "metrics.json",
                    {
                        "scene": scene,
                        "variant": variant,
                        "seed": seed,
                        "psnr": v["psnr"],
                        "psnr_softl1": v["psnr_softl1"],
                        "psnr_gap": v["psnr_gap"],
                        "ssim": v["ssim"],
                        "lpips": v["lpips"],
                        "lpips_note": LPIPS_NOTE if v["lpips"] is None else "",
                        "normal_mae_deg": v["normal_mae_deg"],
                        "n_images": 2,
                        "height": H,
                        "width": W,
                        "softl1_eps": 1e-3,
                        "backend": "torch",
                    },
                )
                write_text(ev / "per_image.csv", "image,psnr,psnr_softl1,ssim,normal_mae_deg\n")
                for i in range(2):
                    strip = np.zeros((H, 3 * W + 8, 3), np.float32)
                    strip[:, :W, 1] = 0.5 + 0.1 * i
                    save_png(ev / "renders" / f"{i:03d}_strip.png", strip)
                    save_png(ev / "renders" / f"{i:03d}_rgb.png", strip[:, W : 2 * W])
                    save_png(ev / "renders" / f"{i:03d}_depth.png", strip[:, :W, ::-1])
                ren.mkdir(parents=True, exist_ok=True)
                # what the render rule declares (density normals for every method)
                for name in ("orbit_rgb.mp4", "orbit_rgb.gif", "orbit_depth.gif", "orbit_normal.gif"):
                    shutil.copy(media / name, ren / name)
    return results


# A report at scale: 3 scenes x 12 variants x 3 seeds (108 runs) of three methods, with one
# ablation pair (the only proposal-based variants, which keeps the reproduced figures few).
SCALE_SCENES = ["chair", "drums", "ficus"]
SCALE_VARIANTS = [*(f"nerf_{k}" for k in range(5)), *(f"mipnerf_{k}" for k in range(5)),
                  "mipnerf360", "mipnerf360_nodist"]
SCALE_SEEDS = [0, 1, 2]
SCALE_BASELINE = "nerf_0"
SCALE_ABLATIONS = {"mipnerf360_nodist": "mipnerf360"}


def scale_method(variant: str) -> str:
    return "mipnerf360" if variant.startswith("mipnerf360") else variant.split("_")[0]


def scale_values(scene: str, variant: str, seed: int) -> dict:
    """Deterministic, plausible metric values of one run of the scale fixture."""
    i, j = SCALE_SCENES.index(scene), SCALE_VARIANTS.index(variant)
    method = scale_method(variant)
    psnr = 24.0 + 1.5 * i + 0.25 * j + 0.1 * ((7 * j + 3 * seed + i) % 5 - 2)
    softl1 = psnr - 9.0 - 0.05 * seed
    return {
        "psnr": psnr,
        "psnr_softl1": softl1,
        "psnr_gap": psnr - softl1,
        "ssim": 0.85 + 0.005 * j + 0.001 * seed - 0.01 * i,
        "lpips": None if j % 6 == 5 else 0.15 - 0.004 * j + 0.001 * seed,  # two variants without
        "normal_mae_deg": None if method == "nerf" else 25.0 - 0.5 * j + seed,
        "train_seconds": 300.0 + 40 * j + 5 * seed,
        "rays_per_second": 20000.0 - 500 * j + 50 * seed,
        "n_params": 500_000 + 100_000 * (j % 4),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results = build_tree(root)
    out = root / "report"
    report(results, out, SCENES, VARIANTS, SEEDS, BASELINE)
    return results, out


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(text: str) -> float:
    return math.nan if text == "" else float(text)


def test_collect_one_row_per_run(built):
    results, _ = built
    df = collect(manifest_from_results(results, SCENES, VARIANTS, SEEDS, BASELINE))
    assert len(df) == len(SCENES) * len(VARIANTS) * len(SEEDS)
    for _, row in df.iterrows():
        v = fixture_values(row["scene"], row["variant"], int(row["seed"]))
        assert row["psnr"] == pytest.approx(v["psnr"])
        assert row["n_params"] == v["n_params"]
        assert math.isnan(row["lpips"]) == (v["lpips"] is None)


def test_report_csv_matches_fixtures(built):
    _, out = built
    rows = _read_csv(out / "report.csv")
    assert len(rows) == (len(SCENES) + 1) * len(VARIANTS)
    table = {(r["scene"], r["variant"]): r for r in rows}
    for scene in SCENES:
        for variant in VARIANTS:
            r = table[(scene, variant)]
            vals = [fixture_values(scene, variant, s) for s in SEEDS]
            assert int(r["n_seeds"]) == len(SEEDS)
            for key in ("psnr", "psnr_softl1", "psnr_gap", "ssim", "train_seconds", "rays_per_second"):
                xs = np.array([v[key] for v in vals])
                assert _num(r[key]) == pytest.approx(xs.mean(), abs=1e-9), key
                assert _num(r[f"{key}_std"]) == pytest.approx(xs.std(ddof=1), abs=1e-9), key
            assert _num(r["psnr_gap"]) == pytest.approx(_num(r["psnr"]) - _num(r["psnr_softl1"]))
            if variant == "refnerf":
                assert math.isnan(_num(r["lpips"]))
            else:
                assert _num(r["lpips"]) == pytest.approx(np.mean([v["lpips"] for v in vals]))
            assert math.isnan(_num(r["normal_mae_deg"])) == (variant == "nerf")
    for variant in VARIANTS:
        r = table[("mean", variant)]
        per_seed = [np.mean([fixture_values(sc, variant, s)["psnr"] for sc in SCENES]) for s in SEEDS]
        assert _num(r["psnr"]) == pytest.approx(np.mean(per_seed))
        assert _num(r["psnr_std"]) == pytest.approx(np.std(per_seed, ddof=1))


def test_best_per_scene_marked(built):
    _, out = built
    rows = _read_csv(out / "report.csv")
    best = {(r["scene"], r["variant"]) for r in rows if r["best_psnr"] == "True"}
    assert {(s, v) for s, v in best if s != "mean"} == {("lego", "mipnerf"), ("shiny", "refnerf")}
    best_lpips = {(r["scene"], r["variant"]) for r in rows if r["best_lpips"] == "True"}
    assert best_lpips == {("lego", "mipnerf"), ("shiny", "mipnerf"), ("mean", "mipnerf")}
    # brute force over the fixture values: the flagged row has the highest mean PSNR in its scene
    for scene in SCENES:
        means = {v: np.mean([fixture_values(scene, v, s)["psnr"] for s in SEEDS]) for v in VARIANTS}
        assert (scene, max(means, key=means.get)) in best

    md = (out / "report.md").read_text()
    for scene, variant in [("lego", "mipnerf"), ("shiny", "refnerf")]:
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {scene} | {variant} |"))
        psnr_cell = line.split("|")[3].strip()
        assert psnr_cell.startswith("**") and psnr_cell.endswith("**"), line
    line = next(ln for ln in md.splitlines() if ln.startswith("| lego | nerf |"))
    assert not line.split("|")[3].strip().startswith("**")
    page = (out / "report.html").read_text()
    lego_mip = re.search(r"<tr><td>lego</td><td>mipnerf</td>(.*?)</tr>", page).group(1)
    assert re.match(r'<td class="num" data-sort="[0-9.]+"><strong>', lego_mip.split("</td>")[0] + "</td>")
    lego_nerf = re.search(r"<tr><td>lego</td><td>nerf</td>(.*?)</tr>", page).group(1)
    assert "<strong>" not in lego_nerf.split("</td>")[0]


def test_markdown_content(built):
    _, out = built
    md = (out / "report.md").read_text()
    assert "legacy" in md and "PSNR-SoftL1" in md
    assert "n/a[^lpips]" in md
    assert f"[^lpips]: LPIPS not available: {LPIPS_NOTE}." in md
    assert " ± " in md  # several seeds: mean ± std
    assert md.count("| **mean** |") == len(VARIANTS)
    # every referenced file resolves from the report folder
    for rel in re.findall(r"\]\(([^)]+)\)", md):
        assert (out / rel).is_file(), rel
    assert len(list((out / "figures").glob("train_*.png"))) == len(SCENES)


def test_paired_comparison_matches_hand_computation(built):
    _, out = built
    rows = _read_csv(out / "paired.csv")
    r = next(r for r in rows if r["variant"] == "refnerf" and r["metric"] == "psnr")
    diffs = [
        fixture_values(sc, "refnerf", s)["psnr"] - fixture_values(sc, "nerf", s)["psnr"]
        for sc in SCENES
        for s in SEEDS
    ]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert int(r["n"]) == n
    assert float(r["mean_diff"]) == pytest.approx(mean)
    assert float(r["ci_low"]) == pytest.approx(mean - half)
    assert float(r["ci_high"]) == pytest.approx(mean + half)
    assert r["verdict"] == ("better" if mean - half > 0 else "no significant difference")
    # no LPIPS for refnerf at all -> no LPIPS comparison row for it
    assert not any(r["variant"] == "refnerf" and r["metric"] == "lpips" for r in rows)


def test_single_seed_has_no_spread(tmp_path):
    results = build_tree(tmp_path, scenes=["lego"], variants=["nerf", "mipnerf"], seeds=[0])
    report(results, tmp_path / "out", ["lego"], ["nerf", "mipnerf"], [0], "nerf")
    md = (tmp_path / "out" / "report.md").read_text()
    assert " ± " not in md
    rows = _read_csv(tmp_path / "out" / "report.csv")
    assert all(r["psnr_std"] == "" for r in rows)
    paired = _read_csv(tmp_path / "out" / "paired.csv")
    assert paired[0]["verdict"] == "too few pairs"


def test_missing_or_inconsistent_input_is_named(tmp_path):
    results = build_tree(tmp_path, scenes=["lego"], variants=["nerf"], seeds=[0])
    metrics = results / "eval" / "lego" / "nerf" / "seed0" / "metrics.json"
    text = metrics.read_text()
    metrics.write_text(text.replace('"seed": 0', '"seed": 3'))
    with pytest.raises(NerfpipeError, match=r"metrics\.json: seed is 3"):
        collect(manifest_from_results(results, ["lego"], ["nerf"], [0], "nerf"))
    metrics.unlink()
    with pytest.raises(NerfpipeError, match=re.escape(str(metrics))):
        report(results, tmp_path / "out", ["lego"], ["nerf"], [0], "nerf")
    with pytest.raises(NerfpipeError, match="baseline"):
        report(results, tmp_path / "out", ["lego"], ["nerf"], [0], "refnerf")


# ---------------------------------------------------------------------------- golden outputs

GOLDEN = Path(__file__).resolve().parent / "data" / "report_golden"
GOLDEN_FILES = ("report.md", "report.csv", "runs.csv", "paired.csv", "ablations.csv", "concentration.csv")


def check_golden(out: Path, name: str) -> None:
    """The report's text outputs in `out` equal tests/data/report_golden/NAME/ byte for byte.
    NERFPIPE_UPDATE_GOLDEN=1 rewrites the golden copies instead (after an intended change)."""
    if os.environ.get("NERFPIPE_UPDATE_GOLDEN") == "1":
        (GOLDEN / name).mkdir(parents=True, exist_ok=True)
        for file in GOLDEN_FILES:
            shutil.copy(out / file, GOLDEN / name / file)
        pytest.skip(f"golden copies of {name} rewritten")
    for file in GOLDEN_FILES:
        assert (out / file).read_text() == (GOLDEN / name / file).read_text(), f"{name}/{file}"


def test_outputs_equal_the_golden_copies(built):
    _, out = built
    check_golden(out, "demo")


# ---------------------------------------------------------------------------- the page


class _Links(HTMLParser):
    """Every src and href of a page, and the tags that carry them."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("src", "href") and value is not None:
                self.links.append((tag, key, value))


def page_links(out: Path) -> list[tuple[str, str, str]]:
    parser = _Links()
    parser.feed((out / REPORT_FILES["html"]).read_text())
    return parser.links


def check_page_links(out: Path) -> set[str]:
    """Every link of report.html is a fragment, a data URI or a relative path to a file inside
    the report folder; returns those paths."""
    targets = set()
    for tag, _, value in page_links(out):
        if value.startswith("#") or value.startswith("data:image/png;base64,"):
            continue
        assert "://" not in value and not value.startswith(("/", "data:")), (tag, value)
        path = (out / unquote(value)).resolve()
        assert path.is_relative_to(out.resolve()) and path.is_file(), (tag, value)
        targets.add(unquote(value))
    return targets


def test_page_links_its_media_and_stays_small(built):
    _, out = built
    page = out / REPORT_FILES["html"]
    size = page.stat().st_size
    print(f"report.html: {size} bytes")
    assert size < 2 * 2**20
    assert "data:image/gif" not in page.read_text()  # GIFs are linked, never inlined
    assert "No ablation variants (variants with <code>base:</code>) are configured." in page.read_text()
    targets = check_page_links(out)
    media = {str(p.relative_to(out)) for p in out.rglob("*") if p.suffix in (".gif", ".mp4")}
    assert len(media) == len(SCENES) * len(VARIANTS) * 4
    assert media <= targets  # every GIF and MP4 the report copied is linked from the page
    srcs = {value for tag, key, value in page_links(out) if tag == "img"}
    assert {m for m in media if m.endswith(".gif")} <= srcs  # GIFs shown, not only linked


def test_strips_are_enlarged_with_sharp_pixels(built):
    results, out = built
    import imageio.v3 as iio

    src = iio.imread(results / "eval" / "lego" / "nerf" / "seed0" / "renders" / "000_strip.png")
    copy = iio.imread(out / "figures" / "strip_lego_nerf_seed0.png")
    scale = -(-256 // src.shape[0])  # the whole factor that reaches 256 pixels
    assert copy.shape[0] >= 256 and copy.shape[:2] == (src.shape[0] * scale, src.shape[1] * scale)
    np.testing.assert_array_equal(copy, np.repeat(np.repeat(src, scale, 0), scale, 1))


def test_page_text_is_escaped(tmp_path):
    """Text from the runs (here an LPIPS note) is escaped by the template, never markup."""
    results = build_tree(tmp_path, scenes=["lego"], variants=["nerf", "refnerf"], seeds=[0])
    metrics = results / "eval" / "lego" / "refnerf" / "seed0" / "metrics.json"
    data = json.loads(metrics.read_text())
    data["lpips_note"] = '<script>alert("x")</script> & more'
    write_json(metrics, data)
    report(results, tmp_path / "out", ["lego"], ["nerf", "refnerf"], [0], "nerf")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more" in page
    assert page.count("<script>") == 1  # the page's own sorting script


@pytest.fixture(scope="module")
def built_at_scale(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    results = build_tree(root, SCALE_SCENES, SCALE_VARIANTS, SCALE_SEEDS, scale_values, scale_method)
    out = root / "report"
    report(results, out, SCALE_SCENES, SCALE_VARIANTS, SCALE_SEEDS, SCALE_BASELINE, SCALE_ABLATIONS)
    return results, out


def test_report_at_scale(built_at_scale):
    """108 runs: every table complete, the page small, one collapsible section per scene."""
    _, out = built_at_scale
    n_runs = len(SCALE_SCENES) * len(SCALE_VARIANTS) * len(SCALE_SEEDS)
    assert len(_read_csv(out / "runs.csv")) == n_runs
    assert len(_read_csv(out / "report.csv")) == (len(SCALE_SCENES) + 1) * len(SCALE_VARIANTS)
    assert len(_read_csv(out / "paired.csv")) > 0
    assert len(_read_csv(out / "ablations.csv")) == len(SCALE_SCENES)
    size = (out / "report.html").stat().st_size
    print(f"report.html at scale: {size} bytes")
    assert size < 2**20
    targets = check_page_links(out)
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.suffix in (".gif", ".mp4")} <= targets
    page = (out / "report.html").read_text()
    sections = re.findall(r'<details class="scene" id="renders-(\w+)"( open)?>', page)
    assert [name for name, _ in sections] == SCALE_SCENES
    assert [bool(is_open) for _, is_open in sections] == [True, False, False]  # many runs: first open
    results_table = page.split('<table id="results" class="sortable">')[1].split("</table>")[0]
    assert results_table.count("<tr>") == 1 + (len(SCALE_SCENES) + 1) * len(SCALE_VARIANTS)
    assert page.count('loading="lazy"') == page.count("<img ")


# ---------------------------------------------------------------------------- manifest, outputs


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry below `folder` (relative path -> bytes; None for a folder)."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def _small_tree(tmp_path: Path) -> tuple[Path, dict]:
    """A one-scene, two-variant, one-seed results tree and its manifest (quick to report on)."""
    results = build_tree(tmp_path, scenes=["lego"], variants=["nerf", "refnerf"], seeds=[0])
    return results, manifest_from_results(results, ["lego"], ["nerf", "refnerf"], [0], "nerf")


def _declared_report_outputs(workdir: Path) -> set[str]:
    """The report rule's declared outputs (relative to the report folder), from a dry run of the
    real Snakefile on config/smoke.yaml."""
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    if snakemake is None:
        pytest.skip("snakemake is not installed")
    proc = subprocess.run(
        [snakemake, "-n", "--forceall", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(SMOKE)],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    block = re.search(r"^(?:local)?rule report:\n(.*?)(?:\n\n|\n\[|\Z)", proc.stdout, re.S | re.M)
    assert block, proc.stdout[-4000:]
    outputs = re.search(r"^\s+output: (.*)$", block.group(1), re.M).group(1).split(", ")
    results = yaml.safe_load(SMOKE.read_text())["results"]
    return {str(Path(o).relative_to(Path(results) / "report")) for o in outputs}


def test_report_writes_exactly_the_declared_outputs(built, tmp_path):
    _, out = built
    declared = _declared_report_outputs(tmp_path)
    assert declared == {*REPORT_FILES.values(), *REPORT_DIRS.values()}
    written = {p.name for p in out.iterdir()}
    assert written == declared | {STAGE_MARKER}
    for name in REPORT_DIRS.values():  # directory outputs: anything inside them is declared
        assert (out / name).is_dir() and any((out / name).iterdir()), name
    for name in REPORT_FILES.values():
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert json.loads((out / STAGE_MARKER).read_text()) == {"stage": "report"}
    # nothing besides the report folder was left beside it (no temporary folders)
    assert {p.name for p in out.parent.iterdir()} == {"results", "media", "report"}


def test_manifest_from_inputs_matches_the_layout(tmp_path):
    """What the report_manifest rule writes from its input lists (expand order: scene x variant
    x seed) is what manifest_from_results builds from nerfpipe.layout."""
    settings = {"scenes": SCENES, "variants": VARIANTS, "seeds": SEEDS, "baseline": BASELINE,
                "ablations": {"refnerf": "mipnerf"}}
    order = list(itertools.product(SCENES, VARIANTS, SEEDS))
    inputs = {key: [str(run_dir("results", stage, *run) / name) for run in order]
              for key, (stage, name) in RUN_FILES.items()}
    manifest = manifest_from_inputs(json.dumps(settings), inputs)
    assert manifest == manifest_from_results("results", SCENES, VARIANTS, SEEDS, BASELINE,
                                             {"refnerf": "mipnerf"})
    assert [(r["scene"], r["variant"], r["seed"]) for r in manifest["runs"]] == order
    check_manifest(manifest, "x")  # a valid manifest
    cfg = {"results": "results", "scenes": {s: {} for s in SCENES}, "seeds": SEEDS,
           "variants": {"nerf": {}, "mipnerf": {}, "refnerf": {"base": "mipnerf"}},
           "report": {"baseline": BASELINE}}
    assert manifest_from_config(cfg) == manifest
    with pytest.raises(NerfpipeError, match="report_manifest: input weights: 1 files for 18 runs"):
        manifest_from_inputs(settings, {**inputs, "weights": inputs["weights"][:1]})


def test_report_from_manifest_file_equals_report_from_results(built, tmp_path):
    results, out = built
    manifest = tmp_path / "manifest.json"
    write_json(manifest, manifest_from_results(results, SCENES, VARIANTS, SEEDS, BASELINE))
    assert cli.main(["report", "--manifest", str(manifest), "--out", str(tmp_path / "r")]) == 0
    for name in ("report.csv", "runs.csv", "paired.csv", "report.md"):
        assert (tmp_path / "r" / name).read_bytes() == (out / name).read_bytes(), name


def test_report_reads_only_the_files_the_manifest_names(tmp_path):
    """Files moved away from the layout are found through the manifest alone."""
    results, manifest = _small_tree(tmp_path)
    moved = tmp_path / "elsewhere"
    shutil.move(results, moved)
    for run in manifest["runs"]:
        for key in RUN_FILES:
            run[key] = str(moved / Path(run[key]).relative_to(results))
    build_report(manifest, tmp_path / "out")
    assert (tmp_path / "out" / REPORT_FILES["md"]).is_file()
    assert not results.exists()


@pytest.mark.parametrize("how", ["missing gif", "corrupt weights"])
def test_failing_report_leaves_previous_report_untouched(tmp_path, how):
    results, manifest = _small_tree(tmp_path)
    out = tmp_path / "report"
    build_report(manifest, out)
    before = _snapshot(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    last = manifest["runs"][-1]
    if how == "missing gif":  # found before anything is written
        Path(last["rgb_gif"]).unlink()
        match = re.escape(last["rgb_gif"]) + r": file not found .*runs\[1\]\.rgb_gif"
    else:  # found late, after figures and media were written into the temporary folder
        Path(last["weights"]).write_text("{not json")
        match = re.escape(last["weights"]) + ": not valid JSON"
    with pytest.raises(NerfpipeError, match=match):
        build_report(manifest, out)
    assert _snapshot(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media", "report", "results"]  # no temp left


def test_report_replaces_a_previous_report(tmp_path):
    results, manifest = _small_tree(tmp_path)
    out = tmp_path / "report"
    build_report(manifest, out)
    (out / REPORT_DIRS["figures"] / "stale.png").write_bytes(b"old")
    build_report(manifest, out)
    assert not (out / REPORT_DIRS["figures"] / "stale.png").exists()
    # a report from before the marker: only declared names, accepted and replaced
    (out / STAGE_MARKER).unlink()
    (out / REPORT_FILES["paired"]).unlink()
    build_report(manifest, out)
    assert (out / STAGE_MARKER).is_file() and (out / REPORT_FILES["paired"]).is_file()


@pytest.mark.parametrize("content", ["unrelated", "other stage", "old report plus", "file"])
def test_report_refuses_an_unrelated_out_folder(tmp_path, content):
    results, manifest = _small_tree(tmp_path)
    out = tmp_path / "mine"
    if content == "file":
        out.write_text("keep me")
    else:
        (out / "data").mkdir(parents=True)
        (out / "data" / "x.bin").write_bytes(b"\x00\x01")
        if content == "unrelated":
            (out / "notes.txt").write_text("keep me")
        elif content == "other stage":
            (out / STAGE_MARKER).write_text(json.dumps({"stage": "train"}))
        else:  # report names, but also something the report never writes
            (out / REPORT_FILES["md"]).write_text("# old")
    before = _snapshot(out) if out.is_dir() else out.read_bytes()
    with pytest.raises(NerfpipeError, match=re.escape(str(out)) + ": .*refusing") as exc:
        build_report(manifest, out)
    assert "\n" not in str(exc.value)
    assert (_snapshot(out) if out.is_dir() else out.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media", "mine", "results"]


def test_report_refuses_an_out_folder_holding_or_inside_its_inputs(tmp_path):
    results, manifest = _small_tree(tmp_path)
    before = _snapshot(results)
    with pytest.raises(NerfpipeError, match=re.escape(str(results)) + ": .*contains its input"):
        build_report(manifest, results)
    inside = Path(manifest["runs"][0]["renders"]) / "report"
    with pytest.raises(NerfpipeError, match=re.escape(str(inside)) + ": .*lies inside its input"):
        build_report(manifest, inside)
    assert _snapshot(results) == before


def _cli_error(capsys, argv: list[str]) -> str:
    """Run `nerfpipe report ARGV`, expect exit 2 and return its one-line error."""
    capsys.readouterr()
    assert cli.main(["report", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("nerfpipe report: error: ") and "\n" not in err, captured.err
    assert "Traceback" not in captured.err + captured.out
    return err


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("{not json", "--settings: not valid JSON"),
        ("[1, 2]", "--settings: expected a JSON object, got list"),
        ('{"scenes": []}', "--settings: missing key(s) variants, seeds, baseline"),
        ('{"scenes": [], "variants": ["nerf"], "seeds": [0], "baseline": "nerf"}',
         "--settings: scenes: expected a non-empty list of names"),
        ('{"scenes": ["lego"], "variants": ["nerf"], "seeds": ["0"], "baseline": "nerf"}',
         "--settings: seeds[0]: expected an integer >= 0, got '0'"),
        ('{"scenes": ["../x"], "variants": ["nerf"], "seeds": [0], "baseline": "nerf"}',
         "--settings: scenes[0]: '../x' is not a name"),
        ('{"scenes": ["lego"], "variants": ["nerf"], "seeds": [0], "baseline": "mip"}',
         "--settings: baseline: 'mip' is not one of the variants ['nerf']"),
        ('{"scenes": ["lego"], "variants": ["nerf"], "seeds": [0], "baseline": "nerf", "ablations": []}',
         "--settings: ablations: expected a JSON object, got list"),
        ('{"scenes": ["lego"], "variants": ["nerf"], "seeds": [0], "baseline": "nerf", "extra": 1}',
         "--settings: unknown key(s) extra"),
    ],
)
def test_bad_settings_exit_2_with_one_line(tmp_path, capsys, settings, expected):
    out = tmp_path / "out"
    err = _cli_error(capsys, ["--settings", settings, "--results", str(tmp_path), "--out", str(out)])
    assert expected in err
    assert not out.exists()


def _edit_runs(edit):
    def apply(m: dict) -> None:
        edit(m["runs"])
    return apply


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda m: m.pop("runs"), "missing key(s) runs"),
        (lambda m: m.update(seeds=0), "seeds: expected a non-empty list of integers"),
        (lambda m: m.update(ablations={"refnerf": "mip"}),
         "ablations: base 'mip' is not one of the variants"),
        (_edit_runs(lambda runs: runs.pop()), "runs: no entry for lego/refnerf/seed0"),
        (_edit_runs(lambda runs: runs.append(dict(runs[0]))), "runs[2]: run lego/nerf/seed0 is listed twice"),
        (_edit_runs(lambda runs: runs[1].pop("weights")), "runs[1]: missing key(s) weights"),
        (_edit_runs(lambda runs: runs[1].update(weights=3)),
         "runs[1].weights: expected a path (a non-empty string), got 3"),
        (_edit_runs(lambda runs: runs[0].update(seed="0")), "runs[0].seed: '0' is not one of the seeds [0]"),
        (_edit_runs(lambda runs: runs[0].update(seed=0.0)), "runs[0].seed: 0.0 is not one of the seeds [0]"),
        (_edit_runs(lambda runs: runs[0].update(scene="ship")),
         "runs[0].scene: 'ship' is not one of the scenes"),
        (_edit_runs(lambda runs: runs[0].update(depht_gif="x")), "runs[0]: unknown key(s) depht_gif"),
        (lambda m: m.update(runs={}), "runs: expected a list of run objects, got dict"),
    ],
)
def test_bad_manifest_exit_2_with_one_line(tmp_path, capsys, edit, expected):
    _, manifest = _small_tree(tmp_path)
    edit(manifest)
    path = tmp_path / "manifest.json"
    write_json(path, manifest)
    out = tmp_path / "out"
    err = _cli_error(capsys, ["--manifest", str(path), "--out", str(out)])
    assert f"{path}: {expected}" in err
    assert not out.exists()


def test_report_cli_argument_errors(tmp_path, capsys):
    manifest = tmp_path / "m.json"
    assert "exactly one of --manifest" in _cli_error(capsys, [])
    assert "(got --manifest and --settings)" in _cli_error(capsys, ["--manifest", "m", "--settings", "{}"])
    assert "--out is required with --manifest" in _cli_error(capsys, ["--manifest", str(manifest)])
    err = _cli_error(capsys, ["--manifest", str(manifest), "--out", str(tmp_path / "o")])
    assert f"{manifest}: file not found" in err
    manifest.write_text("{oops")
    err = _cli_error(capsys, ["--manifest", str(manifest), "--out", str(tmp_path / "o")])
    assert f"{manifest}: not valid JSON" in err
    # by hand from a config: the layout's paths below --results, the first missing one named
    err = _cli_error(capsys, ["--config", str(SMOKE), "--results", str(tmp_path / "none"),
                              "--out", str(tmp_path / "o")])
    assert str(tmp_path / "none" / "train" / "diffuse" / "nerf" / "seed0" / "summary.json") in err
    assert not (tmp_path / "o").exists()


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# After the page has loaded (every image: `probe_page` makes them eager), sorts the results
# table by PSNR, descending, and reports what it found.
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var th = document.querySelector('#results thead th:nth-child(3)');
  th.click();
  th.click();
  var first = document.querySelector('#results tbody tr');
  var p = document.createElement('p');
  p.id = 'probe';
  p.textContent = 'IMAGES ' + ok + '/' + imgs.length + ' FIRST ' + first.cells[0].textContent + '/'
    + first.cells[1].textContent + ' ' + th.getAttribute('aria-sort');
  document.body.appendChild(p);
});
</script>"""


def probe_page(page: str) -> str:
    """The page with every section open, every image loaded before the load event, and PROBE."""
    page = re.sub(r"<details([^>]*?)( open)?>", r"<details\1 open>", page)
    return page.replace('loading="lazy"', 'loading="eager"').replace("</body>", PROBE + "</body>")


def _chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run_chromium(binary: str, args: list[str], url: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *args,
            url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("which", ["built", "built_at_scale"])
def test_html_opens_in_headless_chromium(request, which, tmp_path):
    binary = _chromium()
    if binary is None:
        print("SKIP reason: no chromium binary on PATH (Debian: apt-get install -y chromium)")
        pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium)")
    _, out = request.getfixturevalue(which)
    scenes, variants = (SCENES, VARIANTS) if which == "built" else (SCALE_SCENES, SCALE_VARIANTS)
    page = (out / "report.html").read_text()
    n_img = page.count("<img ")
    # plots (one per scene + 2), the efficiency figure (both fixtures have >= 2 variants with
    # samples_per_ray), per scene x variant a strip and rgb + depth + normal GIFs, per scene a
    # distillation figure of each proposal-based variant and two per ablation pair
    n_proposal = 1 if which == "built" else 2
    n_ablation = 0 if which == "built" else 1
    expected = (len(scenes) + 2) + 1 + len(scenes) * (len(variants) * 4 + n_proposal + 2 * n_ablation)
    assert n_img == expected
    assert 'src="figures/' in page and 'src="/' not in page  # media linked by relative paths
    rows = [r for r in _read_csv(out / "report.csv") if r["scene"] != "mean"]
    best = max(rows, key=lambda r: float(r["psnr"]))
    probe = out / "probe.html"  # beside the report so relative links resolve the same way
    probe.write_text(probe_page(page))
    try:
        res = _run_chromium(binary, ["--dump-dom", "--virtual-time-budget=10000"], probe.as_uri())
        match = re.search(r"IMAGES (\d+)/(\d+) FIRST (\w+)/(\w+) (\w+)", res.stdout)
        assert match, f"no probe output; stdout: {res.stdout[-1500:]}; stderr: {res.stderr[-1500:]}"
        assert (int(match.group(1)), int(match.group(2))) == (expected, expected)
        # sorted by PSNR, descending: the best scene row comes first
        assert match.group(3, 4, 5) == (best["scene"], best["variant"], "descending")
        shot = tmp_path / "report.png"
        res = _run_chromium(
            binary, [f"--screenshot={shot}", "--window-size=1280,2000"], (out / "report.html").as_uri()
        )
        assert shot.is_file(), res.stderr[-2000:]
        import imageio.v3 as iio

        img = iio.imread(shot)
        assert img.shape[:2] == (2000, 1280)
        assert img[..., :3].std() > 5  # a rendered page, not a blank screen
    finally:
        probe.unlink(missing_ok=True)
