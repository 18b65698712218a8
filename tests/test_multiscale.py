"""mip-NeRF's multiscale protocol (sec. 5): area-averaged images at 1, 1/2, 1/4, 1/8, rays whose footprint
grows with the scale, the loss weighted by pixel area, and per-scale evaluation."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfpipe import config as cfgmod
from nerfpipe import losses, metrics
from nerfpipe.cameras import camera_rays, pixel_radii
from nerfpipe.data.multiscale import (
    MIN_SIDE,
    SCALES,
    load_scaled_split,
    lossmult,
    multiscale_rgba,
    per_scale_metrics,
)
from nerfpipe.data.splits import load_split
from nerfpipe.errors import NerfpipeError
from nerfpipe.raycache import load_ray_cache
from nerfpipe.stages import train as train_stage
from nerfpipe.stages.data import prepare_scene
from nerfpipe.stages.evaluate import evaluate
from nerfpipe.stages.rays import build_ray_cache
from nerfpipe.stages.train import train
from nerfpipe.training import data_loss_fn

RES = 88  # the smallest multiscale size: its 1/8 scale holds the 11x11 SSIM window
SCENE = {"synthetic": "thin", "resolution": RES, "n_train": 2, "n_val": 1, "n_test": 1, "seed": 0}
TINY = {"net_depth": 1, "net_width": 16, "net_depth_fine": 1, "net_width_fine": 16, "n_samples": 4,
        "n_importance": 4, "pe_pos": 2, "pe_dir": 1, "batch_size": 64, "log_every": 2, "ckpt_every": 2,
        "lr_warmup": 1, "iterations": 2, "eval_chunk": 4096}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 88x88 scene prepared multiscale and single-scale, with both ray caches."""
    root = tmp_path_factory.mktemp("ms")
    out = {}
    for name, extra in (("multi", {"multiscale": True}), ("single", {})):
        prepare_scene(name, {**SCENE, **extra}, root / "data" / name)
        build_ray_cache(root / "data" / name, root / "rays" / name)
        out[name] = root / "data" / name
        out[f"{name}_rays"] = root / "rays" / name
    return out


def brute_force_average(rgba: np.ndarray, f: int) -> np.ndarray:
    """[H, W, 4] straight alpha -> [H/f, W/f, 4]: loop over pixels, average rgb*alpha and alpha."""
    h, w = rgba.shape[0] // f, rgba.shape[1] // f
    out = np.zeros((h, w, 4))
    for y in range(h):
        for x in range(w):
            premult, alpha = np.zeros(3), 0.0
            for dy in range(f):
                for dx in range(f):
                    px = rgba[y * f + dy, x * f + dx].astype(np.float64)
                    premult += px[:3] * px[3]
                    alpha += px[3]
            premult, alpha = premult / f**2, alpha / f**2
            out[y, x, :3] = premult / alpha if alpha > 0 else 0.0
            out[y, x, 3] = alpha
    return out


def premultiplied(rgba: np.ndarray) -> np.ndarray:
    return np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)


def test_multiscale_images_match_brute_force_area_average() -> None:
    rng = np.random.default_rng(0)
    rgba = rng.uniform(size=(1, 16, 16, 4)).astype(np.float32)
    rgba[0, :8, :8, 3] = 0.0  # a transparent corner: its colour must not bleed
    rgba[0, :8, :8, :3] = 1.0
    scaled = multiscale_rgba(rgba)
    assert sorted(scaled) == list(SCALES)
    bg = np.array([1.0, 1.0, 1.0])
    for f in SCALES:
        assert scaled[f].shape == (1, 16 // f, 16 // f, 4) and scaled[f].dtype == np.float32
        # Straight colour is undefined where alpha is 0 (scale 1 keeps the input's): compare premultiplied.
        want = premultiplied(brute_force_average(rgba[0], f))
        np.testing.assert_allclose(premultiplied(scaled[f][0]), want, atol=1e-6)
        # Alpha-correct: composited on the background, it is the area average of the composited pixels.
        comp = rgba[0, ..., :3] * rgba[0, ..., 3:] + bg * (1 - rgba[0, ..., 3:])
        box = comp.reshape(16 // f, f, 16 // f, f, 3).mean(axis=(1, 3))
        s = scaled[f][0]
        np.testing.assert_allclose(s[..., :3] * s[..., 3:] + bg * (1 - s[..., 3:]), box, atol=1e-6)


def test_data_stage_writes_every_split_at_every_scale(scenes: dict[str, Path]) -> None:
    meta = json.loads((scenes["multi"] / "meta.json").read_text())
    single = json.loads((scenes["single"] / "meta.json").read_text())
    assert meta["multiscale"] is True and meta["scales"] == [1, 2, 4, 8]
    assert "multiscale" not in single and "scales" not in single  # single-scale meta unchanged
    assert meta["fingerprint"] != single["fingerprint"]
    for split in ("train", "val", "test"):
        full = load_split(scenes["multi"], split)["rgba"]
        np.testing.assert_array_equal(full, load_split(scenes["single"], split)["rgba"])
        entries = load_scaled_split(scenes["multi"], split)
        assert [e["scale"] for e in entries] == [1, 2, 4, 8]
        for e in entries:
            f = e["scale"]
            assert e["rgba"].shape == (full.shape[0], RES // f, RES // f, 4)
            assert e["focal"] == pytest.approx(meta["focal"] / f)
            for i in range(full.shape[0]):
                np.testing.assert_allclose(premultiplied(e["rgba"][i]),
                                           premultiplied(brute_force_average(full[i], f)), atol=1e-6)
    assert len(load_scaled_split(scenes["single"], "test")) == 1


def test_resolution_not_divisible_by_8_is_refused(tmp_path: Path) -> None:
    cfg = cfgmod.read_config_file("config/config.yaml")
    cfg["scenes"] = {"wire": {"synthetic": "thin", "resolution": 92, "multiscale": True}}
    with pytest.raises(NerfpipeError, match=r"scenes\.wire: multiscale needs a resolution \(after downscale"):
        cfgmod.validate_config(cfg, "ms.yaml")
    cfg["scenes"] = {"wire": {"synthetic": "thin", "resolution": 96, "multiscale": "yes"}}
    with pytest.raises(NerfpipeError, match=r"scenes\.wire\.multiscale: 'yes' is not of type 'boolean'"):
        cfgmod.validate_config(cfg, "ms.yaml")
    cfg["scenes"] = {"wire": {"synthetic": "thin", "resolution": 96, "multiscale": True}}
    assert cfgmod.resolve_scene(cfgmod.validate_config(cfg, "ms.yaml"), "wire")["multiscale"] is True
    # A path: scene's size is known only when it is read: the data stage names the scene.
    with pytest.raises(NerfpipeError, match=r"scene 'odd': multiscale needs an image size divisible by 8 "
                                            r"and at least 88 a side .*got 12x12"):
        prepare_scene("odd", {**SCENE, "resolution": 12, "multiscale": True}, tmp_path / "odd")
    assert not (tmp_path / "odd").exists()
    # Divisible by 8 but too small for SSIM at 1/8: refused by the data stage, before any training.
    with pytest.raises(NerfpipeError, match=r"scene 'small': .*got 80x80"):
        prepare_scene("small", {**SCENE, "resolution": 80, "multiscale": True}, tmp_path / "small")
    assert not (tmp_path / "small").exists()
    assert MIN_SIDE == (2 * metrics.SSIM_RADIUS + 1) * SCALES[-1] == 88
    # The data stage downscales generated scenes too: the config checks the size it will write.
    cfg["scenes"] = {"wire": {"synthetic": "thin", "resolution": 96, "downscale": 2, "multiscale": True}}
    with pytest.raises(NerfpipeError, match=r"scenes\.wire: multiscale needs a resolution \(after "
                                            r"downscale\) divisible by 8 and at least 88.*got 48"):
        cfgmod.validate_config(cfg, "ms.yaml")


def test_ray_cache_scales_focal_radii_and_lossmult(scenes: dict[str, Path]) -> None:
    cache = load_ray_cache(scenes["multi_rays"])
    meta, data_meta = cache["meta"], json.loads((scenes["multi"] / "meta.json").read_text())
    n, focal = 2, data_meta["focal"]
    sizes = [n * (RES // f) ** 2 for f in SCALES]
    assert meta["n_rays"] == sum(sizes) and meta["scales"] == [1, 2, 4, 8]
    assert meta["scale_offsets"] == np.cumsum([0, *sizes[:-1]]).tolist()
    poses = load_split(scenes["multi"], "train")["poses"]
    base = 2.0 / math.sqrt(12.0) / focal
    for f, start, size in zip(SCALES, meta["scale_offsets"], sizes, strict=True):
        sl = slice(start, start + size)
        np.testing.assert_allclose(cache["lossmult"][sl], f * f)
        assert lossmult(f) == f * f
        # focal / f: the cone radius grows f times (mip-NeRF sec. 3.1 with the scale's pixel width).
        np.testing.assert_allclose(cache["radii"][sl], f * base, rtol=1e-6)
        assert pixel_radii(RES // f, RES // f, focal / f) == pytest.approx(f * base)
        o, d = camera_rays(RES // f, RES // f, focal / f, torch.from_numpy(poses[1]))
        m = (RES // f) ** 2
        np.testing.assert_allclose(cache["directions"][start + m:start + 2 * m], d.reshape(-1, 3), atol=1e-6)
        np.testing.assert_allclose(cache["origins"][start + m:start + 2 * m], o.reshape(-1, 3), atol=1e-6)
        if f < RES:  # neighbouring pixels' directions differ by the scale's pixel width f / focal
            dirs = d.reshape(RES // f, RES // f, 3).numpy()
            assert np.linalg.norm(dirs[0, 1] - dirs[0, 0]) == pytest.approx(f / focal, rel=1e-5)
        rgba = load_scaled_split(scenes["multi"], "train")[SCALES.index(f)]["rgba"]
        np.testing.assert_array_equal(cache["rgba"][sl], rgba.reshape(-1, 4))
    single = load_ray_cache(scenes["single_rays"])
    assert "lossmult" not in single and "multiscale" not in single["meta"]
    assert single["meta"]["fingerprint"] != meta["fingerprint"]
    np.testing.assert_array_equal(single["origins"], cache["origins"][:sizes[0]])  # scale 1 comes first


def test_each_coarse_ray_goes_through_the_centre_of_its_block(scenes: dict[str, Path]) -> None:
    """The ray of pixel (x, y) at scale f is the mean of the rays of the f x f full-resolution pixels its
    box filter averages (pinhole directions are affine in the pixel position), so a coarse pixel's colour
    and its ray see the same patch: no half-pixel shift between scales."""
    cache = load_ray_cache(scenes["multi_rays"])
    offsets = cache["meta"]["scale_offsets"]
    full = np.asarray(cache["directions"][:RES * RES]).reshape(RES, RES, 3)  # image 0 at scale 1
    for f, start in zip(SCALES[1:], offsets[1:], strict=True):
        side = RES // f
        coarse = np.asarray(cache["directions"][start:start + side * side]).reshape(side, side, 3)
        blocks = full.reshape(side, f, side, f, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(coarse, blocks, atol=1e-6)


def test_lossmult_weighted_loss_by_hand() -> None:
    pred = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    target = torch.tensor([[0.3, 0.0, 0.0], [1.0, 0.0, 1.0], [0.5, 0.5, 0.9]])
    lm = torch.tensor([[1.0], [4.0], [64.0]])
    per_ray = [0.09 / 3, 1.0 / 3, 0.16 / 3]  # mean over channels of the squared error
    want = (1 * per_ray[0] + 4 * per_ray[1] + 64 * per_ray[2]) / (1 + 4 + 64)
    settings = {"loss": "mse", "softl1_eps": 1e-3}
    assert float(data_loss_fn(settings, lm)(pred, target)) == pytest.approx(want, rel=1e-6)
    assert float(losses.mse(pred, target, lm)) == pytest.approx(want, rel=1e-6)
    # Without lossmult: the plain mean, the very function single-scale training uses.
    assert data_loss_fn(settings) is losses.mse
    eps = 1e-3
    soft = [np.mean(np.sqrt((p - t) ** 2 + eps)) for p, t in zip(pred.numpy(), target.numpy(), strict=True)]
    want_soft = (1 * soft[0] + 4 * soft[1] + 64 * soft[2]) / 69
    got = data_loss_fn({"loss": "softl1", "softl1_eps": eps}, lm)(pred, target)
    assert float(got) == pytest.approx(want_soft, rel=1e-6)
    equal = data_loss_fn({"loss": "softl1", "softl1_eps": eps}, torch.ones(3, 1))(pred, target)
    assert torch.allclose(equal, losses.softl1(pred, target, eps))


def test_per_scale_metrics_by_hand() -> None:
    rng = np.random.default_rng(1)
    rows, by_hand = [], {}
    for f in (1, 2, 4, 8):
        for i in range(2):
            gt = rng.uniform(size=(96 // f, 96 // f, 3))
            pred = np.clip(gt + rng.normal(scale=0.05 * f, size=gt.shape), 0, 1)
            mse = np.mean((pred - gt) ** 2)
            rows.append({"image": i, "scale": f, "psnr": metrics.psnr(pred, gt),
                         "ssim": metrics.ssim(pred, gt)})
            by_hand.setdefault(f, []).append((-10 * math.log10(mse), rows[-1]["ssim"]))
    got = per_scale_metrics(rows)
    assert list(got) == [f"{k}_s{f}" for f in (1, 2, 4, 8) for k in ("psnr", "ssim")]
    for f, pairs in by_hand.items():
        assert got[f"psnr_s{f}"] == pytest.approx((pairs[0][0] + pairs[1][0]) / 2)
        assert got[f"ssim_s{f}"] == pytest.approx((pairs[0][1] + pairs[1][1]) / 2)
    assert got["psnr_s8"] < got["psnr_s1"]  # more noise at the coarse scale in this fixture


def test_end_to_end_multiscale_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, rays, run, ev = (tmp_path / k for k in ("data", "rays", "run", "eval"))
    prepare_scene("thin", {**SCENE, "resolution": 88, "n_train": 1, "multiscale": True}, data)
    build_ray_cache(data, rays)
    cfg = cfgmod.load_config("config/config.yaml")
    settings = {**cfgmod.resolve_variant(cfg, "mipnerf", seed=0), **TINY, "scene": "thin"}
    seen = []  # the lossmult of every training batch: the data loss is weighted by pixel area

    def spy(s: dict, lm: torch.Tensor | None = None):
        seen.append(lm)
        return data_loss_fn(s, lm)

    monkeypatch.setattr(train_stage, "data_loss_fn", spy)
    summary = train(data, rays, run, settings, threads=1, progress=False, tensorboard=False)
    assert summary["iterations"] == 2
    batches = [lm for lm in seen if lm is not None]
    assert len(batches) == 2 and all(lm.shape == (64, 1) for lm in batches)
    values = torch.cat(batches).unique().tolist()
    assert set(values) <= {1.0, 4.0, 16.0, 64.0} and len(values) > 1  # rays from several scales
    result = evaluate(data, run, ev, threads=1, save_renders=False, device="cpu")
    saved = json.loads((ev / "metrics.json").read_text())
    assert saved["multiscale"] is True and saved["scales"] == [1, 2, 4, 8]
    per_scale = [saved[f"psnr_s{f}"] for f in SCALES]
    assert all(math.isfinite(v) for v in per_scale)
    assert saved["psnr"] == pytest.approx(np.mean(per_scale))  # headline: the average over scales
    assert saved["ssim"] == pytest.approx(np.mean([saved[f"ssim_s{f}"] for f in SCALES]))
    assert result["n_images"] == 1  # views, not (view, scale) rows
    with open(ev / "per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["scale"]) for r in rows] == [1, 2, 4, 8]
    assert float(rows[3]["psnr"]) == pytest.approx(saved["psnr_s8"])


def test_report_table_per_scale_and_absent_without() -> None:
    import pandas as pd

    from nerfpipe.reporting import multiscale as report_ms

    rows = []
    for scene, offset in (("thin", 0.0), ("wire", 2.0)):
        for variant, gain in (("nerf", 0.0), ("mipnerf", 1.0)):
            for seed in (0, 1):
                row = {"scene": scene, "variant": variant, "seed": seed}
                for f in SCALES:
                    row[f"psnr_s{f}"] = 20 + offset + gain * f + seed
                    row[f"ssim_s{f}"] = 0.5 + 0.01 * f
                row["psnr"] = np.mean([row[f"psnr_s{f}"] for f in SCALES])
                row["ssim"] = np.mean([row[f"ssim_s{f}"] for f in SCALES])
                rows.append(row)
    runs = pd.DataFrame(rows)
    table = report_ms.multiscale_table(runs, ["thin", "wire"], ["nerf", "mipnerf"])
    assert table[["scene", "variant"]].values.tolist() == [
        ["thin", "nerf"], ["thin", "mipnerf"], ["wire", "nerf"], ["wire", "mipnerf"],
        ["mean", "nerf"], ["mean", "mipnerf"]]
    assert table.loc[1, "psnr_s8"] == pytest.approx(20 + 8 + 0.5)  # mean over seeds 0, 1
    assert table.loc[5, "psnr_s8"] == pytest.approx(21 + 8 + 0.5)  # mean over scenes
    assert table.loc[5, "psnr"] == pytest.approx(21 + 0.5 + np.mean(SCALES))
    md = report_ms.markdown_lines(runs, ["thin", "wire"], ["nerf", "mipnerf"])
    assert md[0] == "## Multiscale (mip-NeRF sec. 5)"
    assert "| mean | mipnerf | 22.50 | 23.50 | 25.50 | 29.50 | 25.25 |" in "\n".join(md)
    html = report_ms.html_values(runs, ["thin", "wire"], ["nerf", "mipnerf"])
    assert html["heads"][:5] == ["PSNR 1x", "PSNR 1/2", "PSNR 1/4", "PSNR 1/8", "PSNR avg"]
    assert len(html["rows"]) == 6
    single = runs.drop(columns=[c for c in runs.columns if "_s" in c])
    assert report_ms.multiscale_table(single, ["thin"], ["nerf"]) is None
    assert report_ms.markdown_lines(single, ["thin"], ["nerf"]) == []
    assert report_ms.html_values(single, ["thin"], ["nerf"]) is None


def test_shipped_multiscale_config() -> None:
    cfg = cfgmod.load_config("config/multiscale.yaml")
    scene = cfgmod.resolve_scene(cfg, "diffuse")
    assert scene["multiscale"] is True and scene["resolution"] % 8 == 0
    assert {c["metric"] for c in cfg["claims"]} == {"psnr", "psnr_s8"}
    assert {v: cfgmod.resolve_variant(cfg, v)["method"] for v in cfg["variants"]} == {
        "nerf": "nerf", "mipnerf": "mipnerf"}
