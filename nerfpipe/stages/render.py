"""Rendering stage: orbit videos (colour, depth, normals) of a trained model."""

from __future__ import annotations

from pathlib import Path

import torch

from nerfpipe import cameras as camera
from nerfpipe import guard, layout
from nerfpipe.data.splits import load_split
from nerfpipe.device import resolve_device
from nerfpipe.inference import load_trained, render_view
from nerfpipe.schema import schema_defaults
from nerfpipe.video import render_orbit


def render_orbit_video(data_dir: Path, train_dir: Path, out_dir: Path, options: dict,
                       threads: int | None = None, chunk: int | None = None,
                       device: str | None = None) -> dict:
    """Render `frames` views on a circle at `elevation_deg` and `radius` around the origin, at the
    scene's resolution times `resolution_scale`; writes orbit_rgb.mp4, orbit_rgb.gif,
    orbit_depth.gif and orbit_normal.gif (density normals, every method) into out_dir.

    options: the config's `render` section, plus optionally `eval_chunk` (rays per pass)."""
    opts = {**schema_defaults("render"), **options}
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    meta = load_split(data_dir, "test", mmap=True)["meta"]  # only the cameras' meta is needed
    overrides = {"render_normal": True}  # the orbit always shows density normals
    if "eval_chunk" in opts:
        overrides["eval_chunk"] = opts["eval_chunk"]
    model, settings = load_trained(train_dir, dev, data_meta=meta, data_dir=Path(data_dir),
                                   overrides=overrides)
    height = max(1, round(int(meta["height"]) * opts["resolution_scale"]))
    width = max(1, round(int(meta["width"]) * opts["resolution_scale"]))
    poses = camera.orbit_poses(int(opts["frames"]), float(opts["elevation_deg"]), float(opts["radius"]))
    chunk = chunk or settings["eval_chunk"]

    def render_fn(c2w: torch.Tensor) -> dict:
        # Density normals for every method (what the evaluation measures).
        view = render_view(model, settings, meta, c2w, chunk, height, width)
        view.pop("normals_pred", None)
        return view

    with guard.owned_output_dir(Path(out_dir), "render", inputs=[Path(data_dir), Path(train_dir)],
                                legacy_names=layout.RENDER_FILES.values()):
        return render_orbit(render_fn, poses, Path(out_dir), float(meta["near"]), float(meta["far"]),
                            int(opts["fps"]), desc=f"render {settings['variant']}")
