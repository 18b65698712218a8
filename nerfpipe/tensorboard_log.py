"""Optional TensorBoard event files of a training run (the `tensorboard` extra), in its tb/ folder."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import torch

from nerfpipe import io as nio
from nerfpipe import layout
from nerfpipe.errors import NerfpipeError
from nerfpipe.models import RadianceModel
from nerfpipe.render import background_color, composite_background

# TensorBoard event files go to this subfolder of the run folder.
TB_DIR = layout.TENSORBOARD_DIR
TENSORBOARD_ENV = "NERFPIPE_TENSORBOARD"


def tensorboard_importable() -> bool:
    """torch.utils.tensorboard writes event files only with the `tensorboard` package installed."""
    return importlib.util.find_spec("tensorboard") is not None


def want_tensorboard(requested: bool | None) -> bool:
    """Whether this run writes tb/: `requested` (--tensorboard / --no-tensorboard), else
    $NERFPIPE_TENSORBOARD (1 / 0 / auto), else auto = when tensorboard is installed. Asking for it
    without the package is an error, not a silent no."""
    source = "--tensorboard"
    if requested is None:
        text = os.environ.get(TENSORBOARD_ENV, "").strip().lower()
        source = TENSORBOARD_ENV
        if text in ("0", "false", "no", "off"):
            return False
        if text in ("1", "true", "yes", "on"):
            requested = True
        elif text not in ("", "auto"):
            raise NerfpipeError(f"{TENSORBOARD_ENV}={text!r}: expected 1, 0 or auto")
    if requested is False:
        return False
    if not tensorboard_importable():
        if requested:
            raise NerfpipeError(f"{source}: TensorBoard logging needs the tensorboard package "
                                "(pip install 'nerfpipe[tensorboard]')")
        return False
    return True


class TensorBoardLog:
    """TensorBoard event files in the run folder's tb/: every log row's scalars (loss/total and each
    loss term, train/psnr, train/mse, train/lr, train/rays_per_s) and, every `image_every`
    iterations (default ckpt_every) and at the end, val/rgb: ground truth | prediction | error of
    the first validation view, rendered at most VIEW_SIDE pixels on its longer side. Events at or
    past the iteration a run starts from are purged (purge_step: those past the checkpoint when it
    resumes, all older ones when it starts from scratch), so the curves show each iteration once.
    Rendering the view draws no random numbers and leaves the model in training mode: the weights
    are the same with or without TensorBoard."""

    VIEW_SIDE = 128

    def __init__(self, out_dir: Path, data_dir: Path, settings: dict, start: int,
                 image_every: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out_dir / TB_DIR), purge_step=start)
        self.settings = settings
        self.image_every = int(image_every or settings["ckpt_every"])
        self.view = self._first_view(data_dir)

    @staticmethod
    def _first_view(data_dir: Path) -> dict | None:
        from nerfpipe.data.splits import load_split

        meta = nio.read_json(data_dir / "meta.json")
        for split in ("val", "test"):
            if split in meta.get("splits", {}):
                data = load_split(data_dir, split, mmap=True)
                if len(data["poses"]):
                    return {"meta": data["meta"], "pose": np.array(data["poses"][0]),
                            "rgba": np.array(data["rgba"][0]), "split": split}
        return None

    def scalars(self, row: dict) -> None:
        step = row["iteration"]
        for key, value in row.items():
            if key in ("iteration", "elapsed_s"):
                continue
            tag = {"loss": "loss/total"}.get(key) or (f"loss/{key[5:]}" if key.startswith("loss_")
                                                       else f"train/{key}")
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def image_due(self, iteration: int, total: int) -> bool:
        return self.view is not None and (iteration % self.image_every == 0 or iteration == total)

    def image(self, model: RadianceModel, iteration: int) -> None:
        from nerfpipe.inference import render_view
        from nerfpipe.visualize import comparison_strip

        view, meta = self.view, self.view["meta"]
        h, w = int(meta["height"]), int(meta["width"])
        s = max(1, math.ceil(max(h, w) / self.VIEW_SIDE))
        h, w = h // s, w // s
        rgba = view["rgba"][: h * s, : w * s].reshape(h, s, w, s, 4).mean(axis=(1, 3))
        gt = composite_background(torch.from_numpy(rgba), background_color(self.settings)).numpy()
        model.eval()
        try:
            pred = render_view(model, self.settings, meta, torch.from_numpy(view["pose"]),
                               int(self.settings["eval_chunk"]), h, w)["rgb"]
        finally:
            model.train()
        strip = comparison_strip(gt, np.clip(pred, 0.0, 1.0))
        self.writer.add_image(f"{view['split']}/rgb", np.asarray(strip), iteration, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
