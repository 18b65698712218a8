"""Resume checkpoints of a training run, and the run identity that decides whether one may resume.

A checkpoint holds the model, optimizer, grad-scaler and torch RNG state, the iteration, the log
rows and elapsed time, and the run's fingerprint: the settings that determine the weights plus
the content of the ray cache. Only a checkpoint with the current fingerprint is resumed.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError
from nerfpipe.models import RadianceModel
from nerfpipe.settings import weight_settings

log = logging.getLogger("nerfpipe.stages.train")

KEEP_CHECKPOINTS = 2


@dataclass
class TrainState:
    iteration: int = 0
    elapsed: float = 0.0
    bad_in_row: int = 0
    skipped: int = 0
    log_rows: list | None = None


def run_fingerprint(settings: dict, rays_meta: dict) -> str:
    """Identity of a training run: the settings that determine the weights and the content of the
    ray cache (which carries the data's). A checkpoint resumes only a run with the same identity."""
    return nio.fingerprint({"settings": weight_settings(settings),
                            "rays": rays_meta.get("fingerprint")})


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    return sorted(ckpt_dir.glob("ckpt_*.pt"))


def save_checkpoint(ckpt_dir: Path, model: RadianceModel, optimizer, scaler, state: TrainState,
                    settings: dict, fingerprint: str) -> Path:
    """Write ckpt_{iteration}.pt atomically and keep the newest KEEP_CHECKPOINTS."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NerfpipeError(f"refusing to save a checkpoint at iteration {state.iteration}: parameter "
                                f"{name} is not finite")
    path = ckpt_dir / f"ckpt_{state.iteration:08d}.pt"
    nio.save_torch(path, {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "iteration": state.iteration,
        "elapsed": state.elapsed,
        "skipped": state.skipped,
        "log_rows": state.log_rows,
        "fingerprint": fingerprint,
        "settings": json.dumps(weight_settings(settings), sort_keys=True),
        "variant": settings["variant"],
        "torch_rng": torch.get_rng_state(),
    })
    for old in list_checkpoints(ckpt_dir)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def _stale_reason(ckpt: dict, settings: dict) -> str:
    """Why a checkpoint with another fingerprint is not this run: the settings that differ, or
    the inputs."""
    try:
        theirs = json.loads(ckpt.get("settings") or "{}")
    except (TypeError, ValueError):
        theirs = {}
    mine = weight_settings(settings)
    changed = sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k))
    if not theirs:
        return "written by an older nerfpipe"
    if changed:
        return "settings differ: " + ", ".join(changed)
    return "the data or ray cache differ"


def load_latest_checkpoint(ckpt_dir: Path, settings: dict,
                           fingerprint: str) -> tuple[dict | None, Path | None]:
    """Newest readable checkpoint of this very run (same fingerprint), or (None, None).

    A corrupt newest checkpoint falls back to the previous one with a warning. Checkpoints of
    another run (changed settings or inputs) are deleted with one log line: resuming them would
    write old weights under the new settings.
    """
    for leftover in ckpt_dir.glob(".ckpt_*.tmp"):  # a write cut short by a kill
        leftover.unlink(missing_ok=True)
    stale: list[tuple[Path, str]] = []
    found: tuple[dict | None, Path | None] = (None, None)
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            ckpt = nio.load_torch(path)
        except NerfpipeError as exc:
            warnings.warn(f"{exc}; falling back to an older checkpoint", stacklevel=2)
            continue
        if not isinstance(ckpt, dict) or ckpt.get("fingerprint") != fingerprint:
            stale.append((path, _stale_reason(ckpt if isinstance(ckpt, dict) else {}, settings)))
            continue
        found = (ckpt, path)
        break
    if stale:
        log.warning("training from scratch: %d checkpoint(s) in %s belong to another run (%s); removed",
                    len(stale), ckpt_dir, stale[0][1])
        for path, _ in stale:
            path.unlink(missing_ok=True)
    return found
