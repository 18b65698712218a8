"""The papers' published figures: the shipped data is complete and sourced, runs map to it by
their recorded dataset, and the report shows the published-vs-reproduced section only when a run
matches (so the demo report on embedded scenes is unchanged)."""

from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path

import pytest
import yaml

from nerfpipe.errors import NerfpipeError
from nerfpipe.io import read_json, write_json
from nerfpipe.reporting import collect, manifest_from_results
from nerfpipe.reporting.manifest import check_manifest
from nerfpipe.reporting.published import (
    METHOD_OF,
    PUBLISHED_FILE,
    load_published,
    parse_published,
    published_section,
    run_dataset,
)
from nerfpipe.stages.report import report
from tests.test_report import build_tree

REPO = Path(__file__).resolve().parents[1]
TITLE = "## Published figures beside reproduced ones"

# Plausible ranges of each metric (a typo such as 3.254 or 0.0967 falls outside).
RANGES = {"psnr": (20.0, 50.0), "ssim": (0.8, 1.0), "lpips": (0.0, 0.3), "normal_mae_deg": (0.5, 60.0)}


# ---------------------------------------------------------------------------- the shipped data


def test_shipped_data_is_complete_and_sourced():
    pub = load_published()
    assert {(t.method, t.dataset) for t in pub.tables} == {("nerf", "blender"), ("refnerf", "shiny_blender")}
    assert pub.datasets["blender"].scenes == ("chair", "drums", "ficus", "hotdog", "lego", "materials", "mic",
                                              "ship")
    assert pub.datasets["shiny_blender"].scenes == ("ball", "car", "coffee", "helmet", "teapot", "toaster")
    for t in pub.tables:
        assert set(t.scenes) == set(pub.datasets[t.dataset].scenes), t.method  # every scene of the dataset
        for key in ("paper", "authors", "arxiv", "table", "checked_against"):
            assert t.source[key], (t.method, key)
        assert t.protocol
        metrics = {frozenset(v) for v in t.scenes.values()}
        assert len(metrics) == 1, t.method  # every scene has the same metrics
        for scene, values in t.scenes.items():
            for metric, value in values.items():
                low, high = RANGES[metric]
                assert low <= value <= high, (t.method, scene, metric, value)
    nerf = pub.table("nerf", "blender")
    assert nerf.source["arxiv"] == "2003.08934" and "Table 4" in nerf.source["table"]
    assert set(nerf.scenes["lego"]) == {"psnr", "ssim", "lpips"}
    assert nerf.scenes["lego"] == {"psnr": 32.54, "ssim": 0.961, "lpips": 0.050}
    assert [nerf.scenes[s]["psnr"] for s in pub.datasets["blender"].scenes] == [
        33.00, 25.01, 30.13, 36.18, 32.54, 29.62, 32.91, 28.65]
    ref = pub.table("refnerf", "shiny_blender")
    assert ref.source["arxiv"] == "2112.03907"
    assert {s: v["psnr"] for s, v in ref.scenes.items()} == {
        "car": 30.82, "ball": 47.46, "helmet": 29.68, "teapot": 47.90, "toaster": 25.70, "coffee": 34.21}
    assert {s: v["normal_mae_deg"] for s, v in ref.scenes.items()} == {
        "car": 14.93, "ball": 1.55, "helmet": 29.48, "teapot": 9.23, "toaster": 42.87, "coffee": 12.24}


def test_the_data_ships_with_the_package():
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert PUBLISHED_FILE.name in package_data["nerfpipe.reporting"]
    assert PUBLISHED_FILE.parent == REPO / "nerfpipe" / "reporting"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["tables"][0]["source"].pop("table"), r"tables\[0\]: source lacks table"),
    (lambda d: d["tables"][0]["scenes"].update(fern={"psnr": 25.0}), r"tables\[0\]: a scene is not in its"),
    (lambda d: d["tables"][1]["scenes"]["car"].update(psnr="30.82"), r"tables\[1\]\.car\.psnr: not a number"),
    (lambda d: d["tables"][0]["scenes"]["lego"].update(fid=1.0), r"tables\[0\]\.lego: metrics must be"),
    (lambda d: d["tables"][0].update(dataset="llff"), r"tables\[0\]: dataset is not one of"),
])
def test_bad_data_is_refused_naming_the_key(edit, message):
    data = copy.deepcopy(yaml.safe_load(PUBLISHED_FILE.read_text()))
    edit(data)
    with pytest.raises(NerfpipeError, match=message):
        parse_published(data)


# ---------------------------------------------------------------------------- run -> dataset


@pytest.mark.parametrize("scene, config, summary, expected", [
    ("lego", {"dataset_name": "blender"}, {}, ("blender", "lego")),
    ("lego", {"dataset_name": "NeRF_Synthetic"}, {}, ("blender", "lego")),
    ("car", {"dataset_name": "shiny_blender"}, {}, ("shiny_blender", "car")),
    ("lego", {"dataset_name": "llff"}, {}, None),  # a dataset without published figures
    ("fern", {"dataset_name": "blender"}, {}, None),  # not a scene of that dataset
    ("lego_half", {}, {"data_source": "data/nerf_synthetic/lego"}, ("blender", "lego")),
    ("car", {}, {"data_source": "/data/shiny_blender/car/"}, ("shiny_blender", "car")),
    ("lego", {}, {"data_source": "synthetic:diffuse"}, None),  # an embedded scene called lego
    ("lego", {}, {"data_source": "data/mine/lego"}, None),
    ("lego", {}, {}, None),  # nothing recorded: a scene name alone never decides it
])
def test_a_run_maps_to_a_published_scene_by_its_recorded_dataset(scene, config, summary, expected):
    assert run_dataset(scene, config, summary, load_published()) == expected


def test_every_method_maps_to_a_paper_method():
    assert METHOD_OF["refnerf_paper"] == "refnerf"
    assert {"nerf", "mipnerf", "mipnerf360", "refnerf", "refnerf_paper"} == set(METHOD_OF)


# ---------------------------------------------------------------------------- the report section

SCENES = ["lego", "car", "diffuse"]
VARIANTS = ["nerf", "refnerf_paper"]
SEEDS = [0, 1]
# lego records its dataset by name (the train CLI's --dataset_name), car by its dataset folder (what
# training records from the data stage), diffuse is an embedded scene.
DATASET = {"lego": ("dataset_name", "blender"), "car": ("data_source", "data/shiny_blender/car"),
           "diffuse": ("data_source", "synthetic:diffuse")}
HARDWARE = {0: "NVIDIA H200", 1: "AMD EPYC 9654 96-Core Processor"}


def values(scene: str, variant: str, seed: int) -> dict:
    k = SCENES.index(scene) * 10 + VARIANTS.index(variant)
    return {
        "psnr": 30.0 + k / 10 + 0.5 * seed,  # lego nerf: 30.0 and 30.5
        "psnr_softl1": 21.0 + k / 10,
        "psnr_gap": 9.0 + 0.5 * seed,
        "ssim": 0.95 + 0.01 * seed,
        "lpips": None if variant == "refnerf_paper" else 0.06 + 0.01 * seed,
        "normal_mae_deg": None if variant == "nerf" else 20.0 + seed,  # car refnerf_paper: 20 and 21
        "train_seconds": 3600.0 * (1 + seed),
        "rays_per_second": 1e5,
        "n_params": 1000,
    }


def build(root: Path) -> Path:
    results = build_tree(root, scenes=SCENES, variants=VARIANTS, seeds=SEEDS, values=values)
    for scene in SCENES:
        for variant in VARIANTS:
            for seed in SEEDS:
                train = results / "train" / scene / variant / f"seed{seed}"
                key, value = DATASET[scene]
                name = "config.json" if key == "dataset_name" else "summary.json"
                data = read_json(train / name)
                write_json(train / name, {**data, key: value})
                summary = read_json(train / "summary.json")
                write_json(train / "summary.json", {**summary, "device_name": HARDWARE[seed],
                                                    "iterations": 200000})
    return results


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    results = build(root)
    out = root / "report"
    report(results, out, SCENES, VARIANTS, SEEDS, "nerf")
    return results, out


def _section(markdown: str) -> str:
    start = markdown.index(TITLE)
    return markdown[start:markdown.index("\n## ", start + 1)]


def test_section_rows_and_hand_checked_gaps(built):
    results, _ = built
    m = check_manifest(manifest_from_results(results, SCENES, VARIANTS, SEEDS, "nerf"), "test")
    section = published_section(m, collect(m))
    rows = section.comparison.set_index(["scene", "variant", "metric"])
    # only lego x nerf (NeRF on Blender) and car x refnerf_paper (Ref-NeRF on Shiny Blender) match
    assert sorted({i[:2] for i in rows.index}) == [("car", "refnerf_paper"), ("lego", "nerf")]
    lego = rows.loc[("lego", "nerf", "psnr")]
    assert lego["published"] == 32.54 and lego["reproduced"] == pytest.approx(30.25)
    assert lego["gap"] == pytest.approx(30.25 - 32.54) and lego["n_seeds"] == 2
    mae = rows.loc[("car", "refnerf_paper", "normal_mae_deg")]
    assert mae["published"] == 14.93 and mae["gap"] == pytest.approx(20.5 - 14.93)
    assert math.isnan(rows.loc[("car", "refnerf_paper", "lpips"), "gap"])  # no LPIPS reproduced
    assert [t.method for t in section.tables] == ["nerf", "refnerf"]
    assert list(section.runs["hardware"]) == [HARDWARE[0], HARDWARE[1]] * 2


def test_markdown_section(built):
    _, out = built
    md = (out / "report.md").read_text()
    section = _section(md)
    lines = section.splitlines()
    assert "| lego | nerf | nerf | PSNR | 32.54 | 30.25 | -2.29 | 2 |" in lines
    assert "| lego | nerf | nerf | SSIM | 0.961 | 0.955 | -0.006 | 2 |" in lines
    assert "| lego | nerf | nerf | LPIPS | 0.050 | 0.065 | +0.015 | 2 |" in lines
    assert "| car | refnerf_paper | refnerf_paper | Normal MAE (°) | 14.93 | 20.50 | +5.57 | 2 |" in lines
    assert "| car | refnerf_paper | refnerf_paper | LPIPS | 0.041 | n/a | n/a | 2 |" in lines
    assert not any(line.startswith("| diffuse") for line in lines)
    assert not any(line.startswith("| car | nerf") or line.startswith("| lego | refnerf") for line in lines)
    assert "| lego | nerf | 0 | NVIDIA H200 | 200,000 | 60.0 min | 16×12 (paper: 800×800) |" in lines
    assert "| car | refnerf_paper | 1 | AMD EPYC 9654 96-Core Processor | 200,000 | 2.00 h | 16×12 |" in lines
    epyc = "AMD EPYC 9654 96-Core Processor"
    assert f"| lego | nerf | 1 | {epyc} | 200,000 | 2.00 h | 16×12 (paper: 800×800) |" in lines
    assert "arXiv 2003.08934, Table 4" in section and "arXiv 2112.03907" in section
    # after the reproduced figures, before the runs
    assert md.index("## Reproducing the original's figures") < md.index(TITLE) < md.index("## Runs")


def test_html_section(built):
    _, out = built
    page = (out / "report.html").read_text()
    assert '<a href="#published">Published figures beside reproduced ones</a>' in page
    assert '<h2 id="published">' in page and 'id="published-runs"' in page
    row = '<td>lego</td><td>nerf</td><td>nerf</td><td>PSNR</td><td class="num" data-sort="32.54">32.54</td>'
    assert row in page
    assert '<td class="num" data-sort="5.57' in page  # the car normal-MAE gap, full precision to sort
    assert "<td>NVIDIA H200</td>" in page and "arXiv 2112.03907" in page


def test_section_left_out_when_no_run_matches(tmp_path):
    """Scene names of published scenes alone (the demo fixture's lego) give no section."""
    results = build_tree(tmp_path, scenes=["lego"], variants=["nerf"], seeds=[0])
    m = check_manifest(manifest_from_results(results, ["lego"], ["nerf"], [0], "nerf"), "test")
    assert published_section(m, collect(m)) is None
    report(results, tmp_path / "out", ["lego"], ["nerf"], [0], "nerf")
    assert "Published figures" not in (tmp_path / "out" / "report.md").read_text()
    assert 'id="published' not in (tmp_path / "out" / "report.html").read_text()


def test_multiscale_runs_are_not_compared_with_single_scale_tables(tmp_path):
    """A multiscale run's PSNR / SSIM average four scales (mip-NeRF sec. 5): the papers' Blender tables are
    single-scale, so such a run gets no published row even on a published scene."""
    results = build(tmp_path)
    for seed in SEEDS:
        path = results / "eval" / "lego" / "nerf" / f"seed{seed}" / "metrics.json"
        metrics = read_json(path)
        write_json(path, {**metrics, "multiscale": True, "scales": [1, 2, 4, 8],
                          **{f"{k}_s{f}": metrics[k] for k in ("psnr", "ssim") for f in (1, 2, 4, 8)}})
    m = check_manifest(manifest_from_results(results, SCENES, VARIANTS, SEEDS, "nerf"), "test")
    section = published_section(m, collect(m))
    assert sorted(set(zip(section.comparison["scene"], section.comparison["variant"], strict=True))) == [
        ("car", "refnerf_paper")]


def test_training_records_hardware_and_dataset(tiny_scene, tmp_path):
    from nerfpipe.stages.train import train
    from tests.test_train import tiny_settings

    summary = train(tiny_scene["data"], tiny_scene["rays"], tmp_path / "run", tiny_settings(iterations=2),
                    threads=1, device="cpu")
    assert isinstance(summary["device_name"], str) and summary["device_name"]
    assert summary["data_source"] == "synthetic:diffuse"
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["device_name"] == summary["device_name"]
