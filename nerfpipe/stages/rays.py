"""Rays stage: the training-ray cache of a scene (one ray per training pixel, memory-mappable).

The camera model the rays come from is `nerfpipe.cameras`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from nerfpipe import io as nio
from nerfpipe.cameras import camera_rays, pixel_radii
from nerfpipe.data.multiscale import is_multiscale, load_scaled_split, lossmult
from nerfpipe.data.splits import load_split
from nerfpipe.errors import NerfpipeError
from nerfpipe.guard import check_output_dir, write_marker
from nerfpipe.raycache import RAY_CACHE_FILES, RAY_CACHE_FORMAT, RAY_CACHE_OPTIONAL_WIDTHS, RAY_CACHE_WIDTHS

# Free space kept beside a new ray cache (the old cache is still there until the swap).
DISK_HEADROOM_BYTES = 64 << 20


def _check_disk_space(out_dir: Path, needed: int) -> None:
    """Refuse to start a ray cache that cannot fit on the output's file system."""
    probe = Path(out_dir).resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + DISK_HEADROOM_BYTES > free:
        raise NerfpipeError(f"{out_dir}: the ray cache needs {needed / 2**30:.2f} GiB but only "
                            f"{free / 2**30:.2f} GiB are free on its file system")


def build_ray_cache(data_dir: Path, out_dir: Path) -> None:
    """Rays stage: one ray per training pixel, written as memory-mappable float32 .npy files.

    Writes to `out_dir`: origins, directions (unnormalised), viewdirs (normalised) `[P, 3]`,
    radii `[P, 1]`, rgba `[P, 4]` (straight alpha) with `P = n_images * H * W` and
    `index = image * H * W + y * W + x`, plus meta.json {height, width, n_images, focal, near, far}.
    Built in a temporary sibling directory and renamed into place.

    A multiscale scene (nerfpipe.data.multiscale) adds its smaller images after the full-resolution
    ones, one block per scale f (offset `scale_offsets[k]`, index `offset + image * (H/f) * (W/f) + y *
    (W/f) + x`), their rays from focal / f (so radii are f times larger), and lossmult [P, 1] = f^2;
    meta.json adds "multiscale": true, "scales", "scale_offsets" and "n_rays" (= P).
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    scales = load_scaled_split(data_dir, "train", mmap=True)
    split = load_split(data_dir, "train", mmap=True)
    meta = split["meta"]
    rgba, poses = split["rgba"], split["poses"]
    n, height, width = rgba.shape[:3]
    focal = float(meta["focal"])
    multiscale = is_multiscale(meta)
    offsets = np.cumsum([0] + [n * s["height"] * s["width"] for s in scales]).tolist()
    total = int(offsets[-1])
    if "fingerprint" not in meta:
        raise NerfpipeError(f"{data_dir / 'meta.json'}: no content fingerprint (written by an older "
                            "nerfpipe); rerun the data stage")
    check_output_dir(out_dir, "rays", inputs=[data_dir], legacy_names=(*RAY_CACHE_FILES, "meta.json"))
    _check_disk_space(out_dir, total * (sum(RAY_CACHE_WIDTHS.values()) + multiscale) * 4)

    tmp_dir = nio.make_temp_dir(out_dir)
    try:
        shapes = {**RAY_CACHE_WIDTHS, **(RAY_CACHE_OPTIONAL_WIDTHS if multiscale else {})}
        arrays = {k: np.lib.format.open_memmap(tmp_dir / f"{k}.npy", mode="w+", dtype=np.float32,
                                               shape=(total, c)) for k, c in shapes.items()}
        for scale, start in zip(scales, offsets[:-1], strict=True):
            h, w, fl = scale["height"], scale["width"], scale["focal"]
            n_pix = h * w
            for i in range(n):
                o, d = camera_rays(h, w, fl, torch.tensor(np.asarray(poses[i]), dtype=torch.float32))
                d = d.reshape(n_pix, 3)
                sl = slice(start + i * n_pix, start + (i + 1) * n_pix)
                arrays["origins"][sl] = o.reshape(n_pix, 3).numpy()
                arrays["directions"][sl] = d.numpy()
                arrays["viewdirs"][sl] = (d / torch.linalg.norm(d, dim=-1, keepdim=True)).numpy()
                arrays["rgba"][sl] = np.asarray(scale["rgba"][i], np.float32).reshape(n_pix, 4)
            # The cone radius follows the scale's focal length: f times the full-resolution one.
            arrays["radii"][start:start + n * n_pix] = pixel_radii(h, w, fl)
            if multiscale:
                arrays["lossmult"][start:start + n * n_pix] = lossmult(scale["scale"])
        for arr in arrays.values():
            arr.flush()
        arrays.clear()  # drop the memory maps before syncing and renaming
        for k in shapes:
            with open(tmp_dir / f"{k}.npy", "rb+") as f:
                os.fsync(f.fileno())
        cache_meta = {"height": int(height), "width": int(width), "n_images": int(n), "focal": focal,
                      "near": float(meta["near"]), "far": float(meta["far"]),
                      "data_fingerprint": meta["fingerprint"]}
        if multiscale:  # only then, so a single-scale cache's meta and fingerprint stay as they were
            cache_meta.update({"multiscale": True, "scales": [s["scale"] for s in scales],
                               "scale_offsets": offsets[:-1], "n_rays": total})
        # The rays are a pure function of the data: their identity is the data's plus the format.
        cache_meta["fingerprint"] = nio.fingerprint({"rays_format": RAY_CACHE_FORMAT, **cache_meta})
        nio.write_json(tmp_dir / "meta.json", cache_meta)
        write_marker(tmp_dir, "rays")
        nio.replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
