"""Weights along a few rays, kept from evaluation for the report's plots.

For each chosen pixel of a test view: every level's interval endpoints `t` [N+1] and weights
`w` [N] (proposal levels first, the NeRF level last) and the rendered opacity `acc`. The
report plots the proposal's histogram over its intervals against the NeRF's over its finer
intervals (mip-NeRF 360's distillation through the interlevel loss), and the weights with and
without the distortion loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nerfpipe import io as nio
from nerfpipe.inference import view_rays
from nerfpipe.models import RadianceModel
from nerfpipe.render import background_color

# Rays per view kept for the plots: few enough to read, enough to see more than one surface.
DEFAULT_RAYS = 4


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


@torch.no_grad()
def weight_profiles(model: RadianceModel, settings: dict, meta: dict, c2w: torch.Tensor,
                    pixels: list[tuple[int, int]]) -> dict:
    """Per-level t and weights of the rays through `pixels` of camera c2w [4, 4]."""
    h, w = int(meta["height"]), int(meta["width"])
    rays = view_rays(h, w, float(meta["focal"]), c2w.float(), float(meta["near"]), float(meta["far"]))
    index = torch.tensor([y * w + x for y, x in pixels], dtype=torch.long)
    sub = rays.index(index)
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
    if method in ("mipnerf360", "refnerf"):
        return [f"proposal {i}" for i in range(n_levels - 1)] + ["nerf"]
    return ["coarse"] + [f"fine {i}" if n_levels > 2 else "fine" for i in range(n_levels - 1)]


def write_weight_profiles(model: RadianceModel, settings: dict, meta: dict, c2w: np.ndarray,
                          alpha: np.ndarray, path: Path, n_rays: int = DEFAULT_RAYS) -> dict:
    profiles = weight_profiles(model, settings, meta, torch.from_numpy(np.asarray(c2w)),
                               pick_pixels(alpha, n_rays))
    nio.write_json(path, profiles)
    return profiles
