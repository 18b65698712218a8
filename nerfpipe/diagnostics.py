"""Weights along chosen rays: a few kept from evaluation for the report's plots, and a fixed
subset of each test view's pixels for the floater metric.

For each chosen pixel of a test view: every level's interval endpoints `t` [N+1] and weights
`w` [N] (proposal levels first, the NeRF level last) and the rendered opacity `acc`. The
report plots the proposal's histogram over its intervals against the NeRF's over its finer
intervals (mip-NeRF 360's distillation through the interlevel loss), and the weights with and
without the distortion loss.

`floater_rays` gives the last level's `t` and `w` (the weights that make the colour) along
`floater_pixels` of every view of a split, with their ground-truth depth, for
`metrics.floater_fraction`.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from nerfpipe import io as nio
from nerfpipe.inference import view_rays
from nerfpipe.models import RadianceModel, RayBundle
from nerfpipe.render import background_color

# Rays per view kept for the plots: few enough to read, enough to see more than one surface.
DEFAULT_RAYS = 4
# Rays of a whole split in the floater metric, shared evenly by its views: a few thousand (about 5 %
# of the pixels of 20 views of 64x64) keeps its cost small beside rendering the views.
FLOATER_RAYS = 4096
# Pixels used by the floater metric are unmixed: opaque with a surface at the pixel centre, or clear
# without one. Silhouette pixels (partial alpha) are left out: their rays see two depths.
OPAQUE_ALPHA, CLEAR_ALPHA = 0.99, 0.01


def pick_pixels(alpha: np.ndarray, n: int = DEFAULT_RAYS) -> list[tuple[int, int]]:
    """n foreground pixels (alpha > 0.99) spread evenly through the row-major order; falls back to
    the most opaque pixels of the view. alpha: [H, W] -> [(y, x), ...]."""
    flat = alpha.reshape(-1)
    candidates = np.flatnonzero(flat > 0.99)
    if candidates.size < n:
        candidates = np.sort(np.argsort(-flat, kind="stable")[:max(n, 1)])
    picks = candidates[np.linspace(0, candidates.size - 1, n).round().astype(int)]
    width = alpha.shape[1]
    return [(int(i // width), int(i % width)) for i in picks]


def floater_pixels(alpha: np.ndarray, depth: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Up to n unmixed pixels (OPAQUE_ALPHA / CLEAR_ALPHA, with depth agreeing) spread evenly through
    the row-major order, so foreground and background keep the view's proportions; deterministic.
    alpha, depth: [H, W] (depth 0 = background) -> [(y, x), ...]."""
    alpha, depth = np.asarray(alpha), np.asarray(depth)
    clean = ((depth > 0) & (alpha > OPAQUE_ALPHA)) | ((depth <= 0) & (alpha < CLEAR_ALPHA))
    candidates = np.flatnonzero(clean.reshape(-1))
    if candidates.size == 0 or n <= 0:
        return []
    # Steps of at least one candidate: distinct picks.
    picks = candidates[np.linspace(0, candidates.size - 1, min(n, candidates.size)).round().astype(int)]
    width = alpha.shape[1]
    return [(int(i // width), int(i % width)) for i in picks]


def _pixel_rays(meta: dict, c2w: torch.Tensor, pixels: list[tuple[int, int]]) -> RayBundle:
    h, w = int(meta["height"]), int(meta["width"])
    rays = view_rays(h, w, float(meta["focal"]), c2w.float(), float(meta["near"]), float(meta["far"]))
    return rays.index(torch.tensor([y * w + x for y, x in pixels], dtype=torch.long))


@torch.no_grad()
def floater_rays(model: RadianceModel, settings: dict, meta: dict, poses: np.ndarray, alpha: np.ndarray,
                 depth: np.ndarray, n_rays: int = FLOATER_RAYS, chunk: int = 4096) -> dict[str, np.ndarray]:
    """The last level's t [R, S+1] and weights [R, S] along `floater_pixels` of every view, about
    n_rays in all (ceil(n_rays / N) per view), rendered `chunk` rays at a time in float32 (no autocast),
    with gt_depth [R].

    poses [N, 4, 4] camera-to-world; alpha, depth [N, H, W] ground truth (depth 0 = background).
    """
    per_view = math.ceil(n_rays / max(len(poses), 1))
    bundles, gt = [], []
    for c2w, a, d in zip(np.asarray(poses), alpha, depth, strict=True):
        d = np.asarray(d)
        pixels = floater_pixels(np.asarray(a), d, per_view)
        if pixels:
            bundles.append(_pixel_rays(meta, torch.from_numpy(np.asarray(c2w)), pixels))
            gt += [float(d[y, x]) for y, x in pixels]
    if not bundles:
        return {"t": np.zeros((0, 1)), "weights": np.zeros((0, 0)), "gt_depth": np.zeros(0)}
    rays = RayBundle(*(torch.cat([getattr(b, f.name) for b in bundles]) for f in fields(RayBundle)))
    device = next(model.parameters()).device
    bg = background_color(settings).to(device)
    t, w = [], []
    for start in range(0, len(rays), chunk):
        last = model(rays.slice(start, start + chunk).to(device), None, bg)["levels"][-1]
        t.append(last["t"].double().cpu().numpy())
        w.append(last["weights"].double().cpu().numpy())
    # Chunks of a packed estimator (occgrid) differ in width: pad with empty intervals of no weight.
    width = max(x.shape[1] for x in w)
    t = [np.concatenate([x, np.repeat(x[:, -1:], width + 1 - x.shape[1], axis=1)], axis=1) for x in t]
    w = [np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in w]
    return {"t": np.concatenate(t), "weights": np.concatenate(w), "gt_depth": np.asarray(gt)}


@torch.no_grad()
def weight_profiles(model: RadianceModel, settings: dict, meta: dict, c2w: torch.Tensor,
                    pixels: list[tuple[int, int]]) -> dict:
    """Per-level t and weights of the rays through `pixels` of camera c2w [4, 4]."""
    sub = _pixel_rays(meta, c2w, pixels)
    device = next(model.parameters()).device
    out = model(sub.to(device), None, background_color(settings).to(device))
    levels = out["levels"]
    names = level_names(settings["method"], len(levels))
    result = {"method": settings["method"], "variant": settings["variant"], "rays": []}
    for i, (y, x) in enumerate(pixels):
        result["rays"].append({
            "pixel": [y, x],
            "acc": float(out["acc"][i]),
            "levels": [{"name": name, "t": lv["t"][i].float().cpu().tolist(),
                        "w": lv["weights"][i].float().cpu().tolist()}
                       for name, lv in zip(names, levels, strict=True)],
        })
    return result


def level_names(method: str, n_levels: int) -> list[str]:
    if n_levels == 1:  # one level: nerf with estimator occgrid (no coarse network)
        return ["nerf"]
    if method in ("mipnerf360", "refnerf"):
        return [f"proposal {i}" for i in range(n_levels - 1)] + ["nerf"]
    return ["coarse"] + [f"fine {i}" if n_levels > 2 else "fine" for i in range(n_levels - 1)]


def write_weight_profiles(model: RadianceModel, settings: dict, meta: dict, c2w: np.ndarray,
                          alpha: np.ndarray, path: Path, n_rays: int = DEFAULT_RAYS) -> dict:
    profiles = weight_profiles(model, settings, meta, torch.from_numpy(np.asarray(c2w)),
                               pick_pixels(alpha, n_rays))
    nio.write_json(path, profiles)
    return profiles
