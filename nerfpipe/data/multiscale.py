"""mip-NeRF's multiscale protocol (Barron et al. 2021, sec. 5, "multiscale Blender"): every view of
every split at full, 1/2, 1/4 and 1/8 resolution, each pixel of a coarser image the area average of
the full-resolution pixels it covers.

A scale is named by its downscale factor `f` in SCALES (1, 2, 4, 8): the image is `H/f x W/f`, its focal
length `focal / f`, so the cone radius of its pixels (`cameras.pixel_radii`) is `f` times the
full-resolution one, and its training loss weight (`lossmult`) is its pixel area relative to full
resolution, `f^2` (sec. 5: "we scale the loss of each pixel by the area of that pixel's footprint";
multinerf's `lossmult`). The data stage writes scale 1 as `{split}_rgba.npy` (the same array a
single-scale scene has) and scale f > 1 as `{split}_rgba_s{f}.npy` [N, H/f, W/f, 4] (straight alpha,
area-averaged with premultiplied alpha by `downscale.downscale_rgba`); meta.json has
`"multiscale": true, "scales": [1, 2, 4, 8]`. Ground-truth depth and normals stay at full resolution.

One deliberate difference from the paper's data: mip-NeRF's conversion script averaged straight RGBA
(and its loader composited afterwards), which darkens or lightens coarse pixels at alpha edges; here the
average is of premultiplied colour, so a coarse pixel composited on the background is exactly the area
average of the composited full-resolution pixels. Per-scale PSNRs are therefore close to, but not strictly
comparable with, the paper's Table 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfpipe.data.downscale import downscale_rgba
from nerfpipe.data.splits import load_split
from nerfpipe.errors import NerfpipeError
from nerfpipe.protocol import MULTISCALE_FACTORS, MULTISCALE_MIN_SIDE, SSIM_WINDOW, fits_multiscale

SCALES = MULTISCALE_FACTORS


def scaled_name(split: str, factor: int) -> str:
    """File name of one split's images at 1/factor resolution (scale 1: the split's own array)."""
    return f"{split}_rgba.npy" if factor == 1 else f"{split}_rgba_s{factor}.npy"


# The smallest side a multiscale image may have: its 1/8 scale must hold evaluation's SSIM window.
MIN_SIDE = MULTISCALE_MIN_SIDE


def check_divisible(name: str, height: int, width: int) -> None:
    """The coarsest scale must tile the image exactly (a box filter over whole blocks) and hold the SSIM
    window of evaluation (MIN_SIDE), so a bad size stops the data stage, not an evaluation after training."""
    if not fits_multiscale(height, width):
        top, w = SCALES[-1], SSIM_WINDOW
        raise NerfpipeError(f"scene {name!r}: multiscale needs an image size divisible by {top} and at least "
                            f"{MIN_SIDE} a side (the 1/{top} scale must hold the {w}x{w} SSIM window), got "
                            f"{height}x{width} (set resolution / downscale so that it is)")


def multiscale_rgba(rgba: np.ndarray) -> dict[int, np.ndarray]:
    """rgba [N, H, W, 4] straight alpha -> {f: [N, H/f, W/f, 4] float32} for f in SCALES.

    Each scale is a box filter over f x f blocks of the full-resolution image (not a chain of 2x2
    filters; in exact arithmetic the two agree), averaging rgb*alpha and alpha, then dividing: straight
    alpha again, and compositing it on a background equals the area average of the composited pixels.
    """
    rgba = np.asarray(rgba)
    return {f: rgba.astype(np.float32, copy=False) if f == 1 else downscale_rgba(rgba, f) for f in SCALES}


def lossmult(factor: int) -> float:
    """Loss weight of a pixel at 1/factor resolution: its area in full-resolution pixels (mip-NeRF sec. 5)."""
    return float(factor * factor)


def is_multiscale(meta: dict) -> bool:
    return bool(meta.get("multiscale"))


def load_scaled_split(data_dir: Path, split: str, mmap: bool = False) -> list[dict]:
    """Every scale of one split of a data-stage folder, full resolution first.

    Returns [{"scale": f, "rgba": [N, H/f, W/f, 4] float32, "height": H/f, "width": W/f,
    "focal": focal/f}]; a single-scale folder gives one entry (f = 1).
    """
    data_dir = Path(data_dir)
    data = load_split(data_dir, split, mmap=mmap)
    meta = data["meta"]
    h, w, focal = int(meta["height"]), int(meta["width"]), float(meta["focal"])
    scales = [int(f) for f in meta.get("scales", [1])] if is_multiscale(meta) else [1]
    out = []
    for f in scales:
        if f == 1:
            rgba = data["rgba"]
        else:
            path = data_dir / scaled_name(split, f)
            if not path.is_file():
                raise NerfpipeError(f"{path}: missing from the data folder")
            try:
                rgba = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise NerfpipeError(f"{path}: cannot read ({exc})") from exc
        want = (data["rgba"].shape[0], h // f, w // f, 4)
        if rgba.shape != want:
            raise NerfpipeError(f"{data_dir / scaled_name(split, f)}: shape {rgba.shape}, expected {want}")
        out.append({"scale": f, "rgba": rgba, "height": h // f, "width": w // f, "focal": focal / f})
    return out


# Metrics measured per scale (metrics.json `psnr_s1` ... `ssim_s8`); mip-NeRF's Table 1 columns.
PER_SCALE_KEYS = ("psnr", "ssim")


def per_scale_metrics(rows: list[dict], keys: tuple[str, ...] = PER_SCALE_KEYS) -> dict[str, float]:
    """Per-scale means of per-image metrics: {f"{key}_s{f}": mean over the rows whose "scale" is f}.

    rows: one dict per (view, scale) with "scale" and the metric keys (None: not measured, skipped).
    Scales in ascending order; a scale with no value of a key gives None.
    """
    out: dict[str, float] = {}
    for f in sorted({int(r["scale"]) for r in rows}):
        for key in keys:
            values = [r[key] for r in rows if int(r["scale"]) == f and r[key] is not None]
            out[f"{key}_s{f}"] = float(np.mean(values)) if values else None
    return out
