"""The artifact tree: where each stage's outputs live below the results root.

The one definition of the run-folder layout. The Snakefile (`workflow/rules/common.smk`), the
CLI's default paths and the report's manifest all build their paths here, so a renamed file or
folder is renamed everywhere at once.

    {results}/data/{scene}/                          data stage (a folder output)
    {results}/rays/{scene}/                          ray cache (a folder output)
    {results}/train/{scene}/{variant}/seed{seed}/    TRAIN_FILES (+ ckpt/, resume state; tb/)
    {results}/eval/{scene}/{variant}/seed{seed}/     EVAL_FILES (+ renders/)
    {results}/render/{scene}/{variant}/seed{seed}/   RENDER_FILES
    {results}/report/                                REPORT_FILES (+ figures/, videos/)
    {results}/logs/{stage}/..., {results}/benchmarks/{stage}/...
"""

from __future__ import annotations

import re
from pathlib import Path

# Scene and variant names: one path component each, never '..' or a separator.
NAME_PATTERN = r"[A-Za-z0-9_]+"
NAME_RE = re.compile(rf"^{NAME_PATTERN}$")

RUN = "{scene}/{variant}/seed{seed}"
RUN_STAGES = ("train", "eval", "render")

TRAIN_FILES = {"model": "model.pt", "config": "config.json", "train_log": "train_log.csv",
               "summary": "summary.json"}
CKPT_DIR = "ckpt"
TENSORBOARD_DIR = "tb"  # with `tensorboard: true` in the config (or train --tensorboard)
EVAL_FILES = {"metrics": "metrics.json", "per_image": "per_image.csv", "weights": "weights.json"}
EVAL_RENDERS = "renders"
RENDER_FILES = {"rgb_mp4": "orbit_rgb.mp4", "rgb_gif": "orbit_rgb.gif", "depth_gif": "orbit_depth.gif",
                "normal_gif": "orbit_normal.gif"}
REPORT_FILES = {"md": "report.md", "csv": "report.csv", "runs": "runs.csv", "paired": "paired.csv",
                "ablations": "ablations.csv", "concentration": "concentration.csv",
                "html": "report.html"}
REPORT_DIRS = {"figures": "figures", "videos": "videos"}

# Hidden files a stage keeps in its own output folder (see nerfpipe.guard).
STAGE_MARKER = ".nerfpipe-stage"
LOCK_FILE = ".nerfpipe-lock"


def check_name(kind: str, name: str) -> str:
    """`name` if it is a valid scene/variant name, else a NerfpipeError naming it."""
    from nerfpipe.errors import NerfpipeError

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise NerfpipeError(f"{kind} {name!r}: names are letters, digits and underscores only "
                            f"(pattern {NAME_PATTERN})")
    return name


def run_rel(scene: str, variant: str, seed: int) -> str:
    """`{scene}/{variant}/seed{seed}`: the run's folder below train/, eval/ and render/."""
    return RUN.format(scene=check_name("scene", scene), variant=check_name("variant", variant),
                      seed=int(seed))


def data_dir(results: str | Path, scene: str) -> Path:
    return Path(results) / "data" / check_name("scene", scene)


def rays_dir(results: str | Path, scene: str) -> Path:
    return Path(results) / "rays" / check_name("scene", scene)


def run_dir(results: str | Path, stage: str, scene: str, variant: str, seed: int) -> Path:
    """results/{stage}/{scene}/{variant}/seed{seed} for stage in train, eval, render."""
    if stage not in RUN_STAGES:
        raise ValueError(f"run_dir: stage must be one of {RUN_STAGES}, got {stage!r}")
    return Path(results) / stage / run_rel(scene, variant, seed)


def report_dir(results: str | Path) -> Path:
    return Path(results) / "report"
