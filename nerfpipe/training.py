"""One optimisation step and what it needs: the step's random key, the learning-rate schedule, the
data loss, and the ray bundle of a batch. The training stage (nerfpipe.stages.train) and the
benchmarks (bench/) call the same `training_step`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nerfpipe import losses
from nerfpipe.models import RadianceModel, RayBundle


def step_key(seed: int, iteration: int) -> int:
    """Key of every random number drawn at `iteration`: seed in the high bits, iteration above
    16 stream slots (0: ray batch, 1+: sampling levels of the model)."""
    return (seed << 40) | (iteration << 4)


def learning_rate(settings: dict, iteration: int) -> float:
    """Linear warm-up to `lr`, then log-linear decay to `lr_final` at the last iteration
    (the schedule of mip-NeRF, Barron et al. 2021, sec. 4)."""
    lr, lr_final, warmup, total = settings["lr"], settings["lr_final"], settings["lr_warmup"], \
        settings["iterations"]
    progress = min(max(iteration / max(total, 1), 0.0), 1.0)
    decayed = math.exp((1 - progress) * math.log(lr) + progress * math.log(lr_final))
    if warmup > 0 and iteration < warmup:
        return decayed * (iteration + 1) / warmup
    return decayed


def data_loss_fn(settings: dict, lossmult: torch.Tensor | None = None):
    """The data loss `loss_fn(pred [R, 3], target [R, 3]) -> scalar` of `settings["loss"]`; with
    `lossmult` [R, 1] (a multiscale ray cache: each ray's pixel area) the lossmult-weighted mean
    (mip-NeRF sec. 5), else the plain mean."""
    if settings["loss"] == "mse":
        if lossmult is None:
            return losses.mse
        return lambda pred, target: losses.mse(pred, target, lossmult)
    eps = settings["softl1_eps"]
    return lambda pred, target: losses.softl1(pred, target, eps, lossmult)


def make_bundle(batch: dict[str, torch.Tensor], near: float, far: float) -> RayBundle:
    n = batch["origins"].shape[0]
    dev = batch["origins"].device
    return RayBundle(batch["origins"], batch["directions"], batch["viewdirs"], batch["radii"],
                     torch.full((n,), near, device=dev), torch.full((n,), far, device=dev))


@dataclass
class StepResult:
    out: dict[str, torch.Tensor]
    terms: dict[str, torch.Tensor]
    loss: torch.Tensor
    finite: bool


def training_step(model: RadianceModel, optimizer: torch.optim.Optimizer, scaler, rays: RayBundle,
                  target: torch.Tensor, key: int, background: torch.Tensor, loss_fn, settings: dict,
                  amp_dtype: torch.dtype | None) -> StepResult:
    """One optimisation step on a ray batch: forward every level under autocast, loss terms,
    backward (scaled with a GradScaler), gradient clipping (`grad_clip`, `grad_clip_mode`) and the
    optimizer step. A non-finite loss or gradient takes no step: the gradients are dropped and the
    scaler lowers its scale. The training loop and the benchmarks both call this.

    rays: R rays; target: [R, 3] colours composited on `background` [3]; key: the step's random key.
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(target.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        out = model(rays, key, background)
        terms = model.loss_terms(out, rays, target, loss_fn)
    loss = sum(terms.values())
    finite = bool(torch.isfinite(loss))
    if finite:
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        finite = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    if not finite:
        if scaler is not None:
            scaler.update()  # let the scaler lower its scale on overflow
        optimizer.zero_grad(set_to_none=True)
        return StepResult(out, terms, loss, False)
    if settings["grad_clip"] > 0:
        # per_mlp: each MLP on its own (multinerf); global: one norm over all parameters.
        model.clip_gradients_(settings["grad_clip"], settings["grad_clip_mode"])
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return StepResult(out, terms, loss, True)
