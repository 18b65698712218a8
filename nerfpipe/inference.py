"""Rendering whole views with a trained model, in chunks of rays (bounded memory)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from nerfpipe import cameras as camera
from nerfpipe import ext_backend, precision
from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError
from nerfpipe.models import RadianceModel, RayBundle, build_model
from nerfpipe.render import background_color
from nerfpipe.settings import ARCHITECTURE_KEYS, OUTPUT_KEYS

# Outputs of a render that are per-ray images.
IMAGE_KEYS = ("rgb", "depth", "acc", "normals", "normals_pred")


def load_trained(train_dir: Path, device: str | torch.device = "cpu",
                 data_meta: dict | None = None, data_dir: Path | None = None,
                 overrides: dict | None = None) -> tuple[RadianceModel, dict]:
    """Load results/train/.../model.pt (weights_only) and rebuild its model in eval mode on `device`.

    With `data_meta` (the meta.json of the data folder it will be evaluated on), a model trained on
    other data (another scene, or the scene before its images changed) is an error. `overrides`
    replace output options of the training settings (settings.OUTPUT_KEYS), never weight settings.
    """
    path = Path(train_dir) / "model.pt"
    ckpt = nio.load_torch(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "settings" not in ckpt:
        raise NerfpipeError(f"{path}: not a nerfpipe model file (missing 'model' or 'settings')")
    settings = json.loads(ckpt["settings"])
    if data_meta is not None:
        trained_on, here = ckpt.get("data_fingerprint"), data_meta.get("fingerprint")
        if trained_on is None or here is None or trained_on != here:
            where = Path(data_dir or "data") / "meta.json"
            raise NerfpipeError(
                f"{path}: model was trained on other data than {where} describes (scene "
                f"{settings.get('scene')!r} with data fingerprint {str(trained_on)[:12]}, this folder: "
                f"scene {data_meta.get('scene')!r}, {str(here)[:12]}); rerun training on this data")
    for key, value in (overrides or {}).items():
        if key not in OUTPUT_KEYS:
            raise NerfpipeError(f"{key}: not an evaluate/render option (those are {', '.join(OUTPUT_KEYS)})")
        settings[key] = value
    model = build_model(settings)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        arch = {k: settings.get(k) for k in ARCHITECTURE_KEYS}
        raise NerfpipeError(
            f"{path}: weights do not fit the model its settings describe ({arch}): {exc}") from exc
    for name, param in model.named_parameters():
        # Checked before any render is written: NaN weights would only surface as NaN metrics.
        if not bool(torch.isfinite(param).all()):
            raise NerfpipeError(f"{path}: parameter {name} has non-finite values (a diverged model)")
    model.to(device).eval()
    ext_backend.set_backend(settings.get("sampling_backend") or "auto")
    return model, settings


def view_rays(height: int, width: int, focal: float, c2w: torch.Tensor, near: float, far: float) -> RayBundle:
    """All H*W pixel-centre rays of one camera, flattened (row-major)."""
    origins, directions = camera.camera_rays(height, width, focal, c2w.float())
    origins = origins.reshape(-1, 3)
    directions = directions.reshape(-1, 3)
    viewdirs = directions / directions.norm(dim=-1, keepdim=True)
    n = origins.shape[0]
    radii = torch.full((n, 1), camera.pixel_radii(height, width, focal))
    return RayBundle(origins, directions, viewdirs, radii, torch.full((n,), near), torch.full((n,), far))


@torch.no_grad()
def render_rays(model: RadianceModel, rays: RayBundle, background: torch.Tensor, chunk: int) -> dict:
    """Render rays in chunks of `chunk`; returns IMAGE_KEYS present, each [R, ...] on the CPU."""
    device = next(model.parameters()).device
    dtype = precision.autocast_dtype(bool(model.settings.get("amp")), device)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(rays), chunk):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(rays.slice(start, start + chunk).to(device), None, background.to(device))
        for k in IMAGE_KEYS:
            if k in out:
                parts.setdefault(k, []).append(out[k].detach().float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def render_view(model: RadianceModel, settings: dict, meta: dict, c2w: torch.Tensor, chunk: int,
                height: int | None = None, width: int | None = None) -> dict[str, np.ndarray]:
    """Render one camera at the scene's resolution (or height x width at the same field of view).
    Returns numpy images: rgb [H,W,3], depth [H,W], acc [H,W], normals/normals_pred [H,W,3] if any."""
    h, w = height or int(meta["height"]), width or int(meta["width"])
    focal = float(meta["focal"]) * w / int(meta["width"])
    rays = view_rays(h, w, focal, torch.as_tensor(c2w), float(meta["near"]), float(meta["far"]))
    out = render_rays(model, rays, background_color(settings), chunk)
    return {k: v.reshape(h, w, *v.shape[1:]).numpy() for k, v in out.items()}
