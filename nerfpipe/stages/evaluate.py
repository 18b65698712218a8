"""Evaluation stage: render every test view and measure it.

Headline metric: `psnr`, the mean over test images of -10 log10(MSE). Beside it `psnr_softl1`,
-10 log10 of the mean SoftL1 error sqrt(e^2 + eps) with the training loss's eps: the figure the
original implementation reported as "PSNR". It is not a PSNR (a square root of a squared error
is an absolute error, and eps adds a floor), so it reads about 9 dB lower for the same renders.

With ground-truth depth (the embedded scenes): `depth_mae`, the mean |rendered depth - true depth| over
the foreground pixels of the split, and `floater_fraction`, the share of the rendering weight farther
than `floater_distance` from the true surface along a fixed subset of each view's rays
(metrics.floater_fraction, diagnostics.floater_rays), split into `floater_fraction_foreground` and
`floater_fraction_background`; all null without ground-truth depth.

A multiscale scene (mip-NeRF sec. 5, nerfpipe.data.multiscale) is measured at every scale: per_image.csv
gets a `scale` column (the downscale factor f, one row per view and scale), metrics.json the per-scale
means `psnr_s{f}` / `ssim_s{f}` and "scales", and the headline psnr, psnr_softl1 and ssim are the means
over all images of all scales (= the mean of the per-scale means: every scale has every view), the
average the paper reports beside the per-scale figures. Depth, normals, LPIPS, renders/ and floaters stay
at full resolution.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import torch

from nerfpipe import ext_backend, guard, layout, metrics, precision, visualize
from nerfpipe import io as nio
from nerfpipe.data.multiscale import MIN_SIDE, SCALES, is_multiscale, load_scaled_split, per_scale_metrics
from nerfpipe.data.splits import load_split
from nerfpipe.device import resolve_device
from nerfpipe.diagnostics import floater_rays, write_weight_profiles
from nerfpipe.errors import NerfpipeError
from nerfpipe.inference import load_trained, render_view
from nerfpipe.models import RadianceModel
from nerfpipe.progress import track
from nerfpipe.protocol import SSIM_WINDOW
from nerfpipe.render import background_color, composite_background


def evaluate(data_dir: Path, train_dir: Path, out_dir: Path, chunk: int | None = None,
             threads: int | None = None, split: str = "test", save_renders: bool = True,
             device: str | None = None, options: dict | None = None) -> dict:
    """Render the full `split` at the evaluation resolution; write metrics.json, per_image.csv,
    weights.json and renders/ (rgb, depth, normal, strip PNGs) into out_dir. Returns the metrics.

    options: evaluate options overriding the ones the model was trained with (settings.OUTPUT_KEYS:
    eval_chunk, render_depth, render_normal); `chunk` overrides eval_chunk. Renders go to a
    temporary folder that replaces renders/ only when everything succeeded, so a failure leaves
    no partial renders beside older good ones.
    """
    data_dir, train_dir, out_dir = Path(data_dir), Path(train_dir), Path(out_dir)
    if threads:
        torch.set_num_threads(threads)
    # Check every input before anything is created under out_dir.
    dev = resolve_device(device)
    data = load_split(data_dir, split)
    meta = data["meta"]
    window = SSIM_WINDOW
    if min(int(meta["height"]), int(meta["width"])) < window:
        raise NerfpipeError(f"{data_dir / 'meta.json'}: {split} images are {meta['height']}x{meta['width']}; "
                            f"evaluation needs at least {window}x{window} (the SSIM window)")
    if is_multiscale(meta) and min(int(meta["height"]), int(meta["width"])) < MIN_SIDE:
        raise NerfpipeError(f"{data_dir / 'meta.json'}: multiscale {split} images are {meta['height']}x"
                            f"{meta['width']}; their 1/{SCALES[-1]} scale must hold the {window}x{window} "
                            f"SSIM window (at least {MIN_SIDE} pixels a side)")
    model, settings = load_trained(train_dir, dev, data_meta=meta, data_dir=data_dir, overrides=options)
    with guard.owned_output_dir(out_dir, "evaluate", inputs=[data_dir, train_dir],
                                legacy_names=(*layout.EVAL_FILES.values(), layout.EVAL_RENDERS)):
        renders = nio.make_temp_dir(out_dir / layout.EVAL_RENDERS)
        try:
            result = _evaluate(model, settings, data, data_dir, train_dir, out_dir, renders, chunk, split,
                               save_renders)
            nio.replace_dir(renders, out_dir / layout.EVAL_RENDERS)
        except BaseException:
            shutil.rmtree(renders, ignore_errors=True)
            raise
    return result


def _evaluate(model: RadianceModel, settings: dict, data: dict, data_dir: Path, train_dir: Path,
              out_dir: Path, renders: Path, chunk: int | None, split: str, save_renders: bool) -> dict:
    meta = data["meta"]
    chunk = chunk or settings["eval_chunk"]
    bg = background_color(settings)
    gt_all = composite_background(torch.from_numpy(np.asarray(data["rgba"])), bg).numpy()
    eps = settings["softl1_eps"]
    near, far = float(meta["near"]), float(meta["far"])

    lpips_ok, lpips_note = metrics.lpips_status()
    rows, depth_parts = [], []
    for i, pose in enumerate(track(np.asarray(data["poses"]), f"evaluate {settings['variant']}", "image")):
        view = render_view(model, settings, meta, torch.from_numpy(pose), chunk)
        pred, gt = np.clip(view["rgb"], 0.0, 1.0), gt_all[i]
        row = {"image": i, "psnr": metrics.psnr(pred, gt), "psnr_softl1": metrics.psnr_softl1(pred, gt, eps),
               "ssim": metrics.ssim(pred, gt), "lpips": metrics.lpips(pred, gt) if lpips_ok else None,
               "normal_mae_deg": None, "normal_mae_pred_deg": None, "normal_mae_unweighted_deg": None,
               "depth_mae": None}
        if data.get("depth") is not None:
            gt_depth = np.asarray(data["depth"][i], dtype=np.float64)
            mae, n_fg = metrics.depth_error(view["depth"], gt_depth)
            row["depth_mae"] = mae if n_fg else None
            depth_parts.append((mae, n_fg))
        # Density normals for every method, so the column compares like with like; Ref-NeRF's
        # predicted normals are measured too, in their own column. As the Ref-NeRF paper (multinerf's
        # eval.py): each pixel's angular error weighted by rendered opacity x ground-truth alpha.
        # normal_mae_unweighted_deg: the plain mean over pixels with a ground-truth normal (density
        # normals), the figure reported before.
        normals = view.get("normals")
        if data.get("normals") is not None:
            gt_normals = np.asarray(data["normals"][i])
            pixel_weights = np.asarray(view["acc"], dtype=np.float64) * np.asarray(data["rgba"][i, ..., 3])
            mask = np.linalg.norm(gt_normals, axis=-1) > 0.5
            for key, source in (("normal_mae_deg", "normals"), ("normal_mae_pred_deg", "normals_pred")):
                if source in view:
                    mae = metrics.weighted_normal_mae_deg(view[source], gt_normals, pixel_weights)
                    row[key] = mae if math.isfinite(mae) else None
            if normals is not None and mask.any():
                row["normal_mae_unweighted_deg"] = metrics.normal_mae_deg(normals, gt_normals, mask)
        if is_multiscale(meta):
            row = {"image": i, "scale": 1, **{k: v for k, v in row.items() if k != "image"}}
        rows.append(row)
        if save_renders:
            nio.save_png(renders / f"{i:03d}_rgb.png", pred)
            if settings["render_depth"]:
                nio.save_png(renders / f"{i:03d}_depth.png",
                             visualize.depth_to_rgb(view["depth"], near, far, view["acc"]))
            if normals is not None and settings["render_normal"]:
                nio.save_png(renders / f"{i:03d}_normal.png", visualize.normals_to_rgb(normals, view["acc"]))
            nio.save_png(renders / f"{i:03d}_strip.png", visualize.comparison_strip(gt, pred))

    if is_multiscale(meta):
        rows += _smaller_scales(model, settings, data, data_dir, split, bg, chunk, eps)

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(values)) if values else None

    result = {
        "scene": settings.get("scene", data_dir.name), "variant": settings["variant"],
        "method": settings["method"], "seed": settings["seed"], "split": split,
        "psnr": mean("psnr"), "psnr_softl1": mean("psnr_softl1"), "ssim": mean("ssim"),
        "lpips": mean("lpips"), "lpips_note": "" if lpips_ok else lpips_note,
        "normal_mae_deg": mean("normal_mae_deg"), "normal_mae_pred_deg": mean("normal_mae_pred_deg"),
        "normal_mae_unweighted_deg": mean("normal_mae_unweighted_deg"),
        "normals_source": "density gradient", "normal_mae_weights": "rendered opacity x ground-truth alpha",
        **_depth_metrics(model, settings, data, depth_parts, chunk),
        "n_images": len(data["poses"]), "height": int(meta["height"]), "width": int(meta["width"]),
        "softl1_eps": eps, "backend": ext_backend.get_backend(),
        "precision": precision.precision_name(bool(settings["amp"]), next(model.parameters()).device),
    }
    result["psnr_gap"] = result["psnr"] - result["psnr_softl1"]
    if is_multiscale(meta):
        result.update({"multiscale": True, "scales": sorted({r["scale"] for r in rows}),
                       **per_scale_metrics(rows)})
    if not all(math.isfinite(v) for v in (result["psnr"], result["psnr_softl1"], result["ssim"])):
        raise NerfpipeError(f"{train_dir / 'model.pt'}: evaluation gave non-finite metrics (psnr "
                            f"{result['psnr']}, ssim {result['ssim']}): the model renders NaN or inf")
    first_pose, first_alpha = np.asarray(data["poses"][0]), np.asarray(data["rgba"][0, ..., 3])
    write_weight_profiles(model, settings, meta, first_pose, first_alpha, out_dir / "weights.json")
    nio.write_csv(out_dir / "per_image.csv", rows, empty_header=("image",))
    nio.write_json(out_dir / "metrics.json", result)
    return result


def _smaller_scales(model: RadianceModel, settings: dict, data: dict, data_dir: Path, split: str,
                    bg: torch.Tensor, chunk: int, eps: float) -> list[dict]:
    """per_image rows of every view at every scale f > 1 of a multiscale split: rendered at
    (H/f) x (W/f) with focal / f (inference.render_view), against the area-averaged ground truth."""
    rows = []
    for scale in load_scaled_split(data_dir, split)[1:]:
        gt_all = composite_background(torch.from_numpy(np.asarray(scale["rgba"])), bg).numpy()
        f = scale["scale"]
        for i, pose in enumerate(track(np.asarray(data["poses"]), f"evaluate {settings['variant']} at 1/{f}",
                                       "image")):
            view = render_view(model, settings, data["meta"], torch.from_numpy(pose), chunk,
                               height=scale["height"], width=scale["width"])
            pred, gt = np.clip(view["rgb"], 0.0, 1.0), gt_all[i]
            rows.append({"image": i, "scale": f, "psnr": metrics.psnr(pred, gt),
                         "psnr_softl1": metrics.psnr_softl1(pred, gt, eps), "ssim": metrics.ssim(pred, gt),
                         "lpips": None, "normal_mae_deg": None, "normal_mae_pred_deg": None,
                         "normal_mae_unweighted_deg": None, "depth_mae": None})
    return rows


def _depth_metrics(model: RadianceModel, settings: dict, data: dict, depth_parts: list[tuple[float, int]],
                   chunk: int) -> dict:
    """metrics.json's depth fields: depth_mae pooled over every foreground pixel of the split (from
    each view's (mean, pixel count)), and the floater fraction of the split's floater rays pooled
    (diagnostics.floater_rays); None throughout without ground-truth depth."""
    keys = ("depth_mae", "floater_fraction", "floater_fraction_foreground", "floater_fraction_background",
            "floater_distance", "floater_rays")
    out: dict = dict.fromkeys(keys)
    if data.get("depth") is None:
        return out

    def finite(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    n_fg = sum(n for _, n in depth_parts)
    if n_fg:
        out["depth_mae"] = finite(sum(mae * n for mae, n in depth_parts if n) / n_fg)
    meta = data["meta"]
    distance = metrics.floater_distance(float(meta["near"]), float(meta["far"]))
    rays = floater_rays(model, settings, meta, np.asarray(data["poses"]), np.asarray(data["rgba"][..., 3]),
                        np.asarray(data["depth"]), chunk=chunk)
    out["floater_distance"], out["floater_rays"] = distance, len(rays["gt_depth"])
    if len(rays["gt_depth"]):
        f = metrics.floater_fraction(rays["weights"], rays["t"], rays["gt_depth"], distance)
        out["floater_fraction"] = finite(f["fraction"])
        out["floater_fraction_foreground"] = finite(f["foreground"])
        out["floater_fraction_background"] = finite(f["background"])
    return out
