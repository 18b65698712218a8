"""The report stage builds from a fixture results tree and its numbers match the fixtures."""

from __future__ import annotations

import csv
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from nerfpipe.errors import NerfpipeError
from nerfpipe.io import save_png, write_json, write_text
from nerfpipe.report import collect, report
from nerfpipe.video import render_orbit

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


def build_tree(root: Path, scenes=SCENES, variants=VARIANTS, seeds=SEEDS) -> Path:
    """Write a complete results tree (train, eval, render) for every run."""
    results = root / "results"
    media = root / "media"
    poses = np.tile(np.eye(4, dtype=np.float32), (N_FRAMES, 1, 1))
    poses[:, 0, 3] = np.linspace(0.0, 1.0, N_FRAMES)
    render_orbit(_fake_render, poses, media, near=2.0, far=6.0, fps=8)
    for scene in scenes:
        for variant in variants:
            for seed in seeds:
                v = fixture_values(scene, variant, seed)
                rel = Path(scene) / variant / f"seed{seed}"
                train, ev, ren = results / "train" / rel, results / "eval" / rel, results / "render" / rel
                write_json(
                    train / "summary.json",
                    {
                        "scene": scene,
                        "variant": variant,
                        "method": variant,
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
                        "elapsed_s": it * (0.1 + 0.05 * VARIANTS.index(variant)),
                        "lr": 5e-4,
                        "loss": 0.1 / (1 + it) ** (1 + 0.2 * VARIANTS.index(variant)),
                        "mse": 0.1 / (1 + it),
                        "psnr": 10 + np.log1p(it) + VARIANTS.index(variant),
                        "rays_per_s": 5000.0,
                        "loss_interlevel": 0.0,
                    }
                )
                write_text(train / "train_log.csv", log.to_csv(index=False))
                write_json(train / "config.json", {"variant": variant, "method": variant, "seed": seed,
                                                   "iterations": 50, "distortion_weight": 0.01})
                write_json(ev / "weights.json", weight_fixture(variant, variant))
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
                for name in ("orbit_rgb.mp4", "orbit_rgb.gif", "orbit_depth.gif"):
                    shutil.copy(media / name, ren / name)
                if variant == "refnerf":
                    shutil.copy(media / "orbit_normal.gif", ren / "orbit_normal.gif")
    return results


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
    df = collect(results, SCENES, VARIANTS, SEEDS)
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
    assert lego_mip.split("</td>")[0].startswith('<td class="num"><strong>')


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
        collect(results, ["lego"], ["nerf"], [0])
    metrics.unlink()
    with pytest.raises(NerfpipeError, match=re.escape(str(metrics))):
        report(results, tmp_path / "out", ["lego"], ["nerf"], [0], "nerf")
    with pytest.raises(NerfpipeError, match="baseline"):
        report(results, tmp_path / "out", ["lego"], ["nerf"], [0], "refnerf")


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var p = document.createElement('p');
  p.id = 'probe';
  p.textContent = 'IMAGES ' + ok + '/' + imgs.length;
  document.body.appendChild(p);
});
</script>"""


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


def test_html_opens_in_headless_chromium(built, tmp_path):
    binary = _chromium()
    if binary is None:
        print("SKIP reason: no chromium binary on PATH (Debian: apt-get install -y chromium)")
        pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium)")
    _, out = built
    page = (out / "report.html").read_text()
    n_img = page.count("<img ")
    # plots (one per scene + 2), and per scene x variant a strip, rgb + depth GIFs (+ normal GIF),
    # and per scene a distillation figure of the one proposal-based variant (refnerf)
    expected = (len(SCENES) + 2) + len(SCENES) * (len(VARIANTS) * 3 + 1) + len(SCENES)
    assert n_img == expected
    assert 'src="figures/' not in page and 'src="/' not in page  # everything embedded
    probe = out / "probe.html"  # beside the report so relative links would resolve the same way
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    try:
        res = _run_chromium(binary, ["--dump-dom", "--virtual-time-budget=5000"], probe.as_uri())
        match = re.search(r"IMAGES (\d+)/(\d+)", res.stdout)
        assert match, f"no probe output; stderr: {res.stderr[-2000:]}"
        assert (int(match.group(1)), int(match.group(2))) == (expected, expected)
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
