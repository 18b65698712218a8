"""Reading the data stage's output (results/data/{scene}): one split's arrays and meta.json.

The folder's layout is documented in nerfpipe.stages.data, which writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError

SPLITS = ("train", "val", "test")


def load_split(data_dir: Path, split: str, mmap: bool = False) -> dict:
    """Read one split of a data-stage folder (memory-mapped read-only with `mmap`, for large scenes).

    Returns {"rgba": [N, H, W, 4] float32, "poses": [N, 4, 4] float32, "depth": [N, H, W] or None,
    "normals": [N, H, W, 3] or None, "meta": the dict of meta.json}.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NerfpipeError(f"{data_dir}: data folder not found (run the data stage)")
    meta = nio.read_json(data_dir / "meta.json")
    if split not in meta.get("splits", {}):
        have = sorted(meta.get("splits", {}))
        raise NerfpipeError(f"{data_dir / 'meta.json'}: no split {split!r} (have {have})")

    def load(key: str) -> np.ndarray:
        path = data_dir / f"{split}_{key}.npy"
        if not path.is_file():
            raise NerfpipeError(f"{path}: missing from the data folder")
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise NerfpipeError(f"{path}: cannot read ({exc})") from exc

    out = {"rgba": load("rgba"), "poses": load("poses"),
           "depth": load("depth") if meta.get("has_depth") else None,
           "normals": load("normals") if meta.get("has_normals") else None, "meta": meta}
    n, h, w = int(meta["splits"][split]), int(meta["height"]), int(meta["width"])
    if out["rgba"].shape != (n, h, w, 4) or out["poses"].shape != (n, 4, 4):
        raise NerfpipeError(f"{data_dir}: {split} arrays have shapes {out['rgba'].shape}, "
                            f"{out['poses'].shape}, expected {(n, h, w, 4)}, {(n, 4, 4)} from meta.json")
    return out
