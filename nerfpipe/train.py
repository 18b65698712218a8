"""Training stage: fit one variant to one scene's ray cache.

Every random number of a step (ray batch, stratified jitter, inverse-transform u) comes from
counter-based hashes of a key derived from (seed, iteration), in the torch reference and the
extension alike, so the sampling ops carry no state. Weight initialisation uses torch's seeded
generator, whose state the checkpoint keeps with the model, optimizer, grad-scaler, iteration,
log and elapsed time; numpy's global generator is not used. A run killed at any point and
resumed from its last checkpoint therefore ends with bit-identical weights on CPU.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nerfpipe import io as nio
from nerfpipe import losses, precision, sampling
from nerfpipe.errors import NerfpipeError
from nerfpipe.models import RadianceModel, RayBundle, build_model
from nerfpipe.rays import load_ray_cache

CKPT_DIR = "ckpt"
KEEP_CHECKPOINTS = 2
# Settings that fix the shapes of the parameters: a checkpoint with other values cannot be resumed.
ARCHITECTURE_KEYS = ("method", "net_depth", "net_width", "net_depth_fine", "net_width_fine", "pe_pos",
                     "pe_dir", "prop_samples", "prop_net_depth", "prop_net_width", "deg_view",
                     "bottleneck_width")
# Ray caches above this size are gathered from the memory map batch by batch instead of loaded.
MAX_IN_MEMORY_BYTES = 2 << 30


def step_key(seed: int, iteration: int) -> int:
    """Key of every random number drawn at `iteration`: seed in the high bits, iteration above
    16 stream slots (0: ray batch, 1+: sampling levels of the model)."""
    return (seed << 40) | (iteration << 4)


def background_color(settings: dict) -> torch.Tensor:
    """[3]: white with white_bkgd, else black (the same in training and evaluation)."""
    return torch.ones(3) if settings["white_bkgd"] else torch.zeros(3)


def composite_background(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """rgba: [..., 4] straight alpha -> [..., 3] = rgb * a + bg * (1 - a)."""
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


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


def data_loss_fn(settings: dict):
    if settings["loss"] == "mse":
        return losses.mse
    eps = settings["softl1_eps"]
    return lambda pred, target: losses.softl1(pred, target, eps)


class RayStore:
    """The training rays of a scene, from the ray cache (results/rays/{scene})."""

    def __init__(self, rays_dir: Path, device: torch.device) -> None:
        cache = load_ray_cache(rays_dir)
        self.meta = cache["meta"]
        self.arrays = {k: cache[k] for k in ("origins", "directions", "viewdirs", "radii", "rgba")}
        self.n_rays = self.arrays["origins"].shape[0]
        total = sum(a.nbytes for a in self.arrays.values())
        self.device = device
        self.tensors = None
        if total <= MAX_IN_MEMORY_BYTES:
            self.tensors = {k: torch.from_numpy(np.array(a)).to(device) for k, a in self.arrays.items()}

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.tensors is not None:
            idx = indices.to(self.device)
            return {k: v[idx] for k, v in self.tensors.items()}
        idx = np.sort(indices.cpu().numpy())
        return {k: torch.from_numpy(np.array(a[idx])).to(self.device) for k, a in self.arrays.items()}


def make_bundle(batch: dict[str, torch.Tensor], near: float, far: float) -> RayBundle:
    n = batch["origins"].shape[0]
    dev = batch["origins"].device
    return RayBundle(batch["origins"], batch["directions"], batch["viewdirs"], batch["radii"],
                     torch.full((n,), near, device=dev), torch.full((n,), far, device=dev))


@dataclass
class TrainState:
    iteration: int = 0
    elapsed: float = 0.0
    bad_in_row: int = 0
    skipped: int = 0
    log_rows: list | None = None


def settings_fingerprint(settings: dict) -> str:
    return json.dumps({k: settings.get(k) for k in ARCHITECTURE_KEYS}, sort_keys=True)


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    return sorted(ckpt_dir.glob("ckpt_*.pt"))


def save_checkpoint(ckpt_dir: Path, model: RadianceModel, optimizer, scaler, state: TrainState,
                    settings: dict) -> Path:
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
        "fingerprint": settings_fingerprint(settings),
        "variant": settings["variant"],
        "torch_rng": torch.get_rng_state(),
    })
    for old in list_checkpoints(ckpt_dir)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(ckpt_dir: Path, settings: dict) -> tuple[dict | None, Path | None]:
    """Newest readable checkpoint; a corrupt newest one falls back to the previous with a warning.
    A checkpoint of another variant or model size is an error (resuming it would be meaningless)."""
    for leftover in ckpt_dir.glob(".ckpt_*.tmp"):  # a write cut short by a kill
        leftover.unlink(missing_ok=True)
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            ckpt = nio.load_torch(path)
        except NerfpipeError as exc:
            warnings.warn(f"{exc}; falling back to an older checkpoint", stacklevel=2)
            continue
        if ckpt.get("fingerprint") != settings_fingerprint(settings):
            raise NerfpipeError(
                f"{path}: checkpoint was written for a different variant or model size "
                f"(variant {ckpt.get('variant')!r}, architecture {ckpt.get('fingerprint')}); expected "
                f"{settings_fingerprint(settings)}. Delete {ckpt_dir} to start over.")
        return ckpt, path
    return None, None


def train(data_dir: Path, rays_dir: Path, out_dir: Path, settings: dict, threads: int | None = None,
          device: str | None = None, progress: bool | None = None) -> dict:
    """Train `settings["method"]` on the scene; write model.pt, config.json, train_log.csv,
    summary.json into out_dir. Returns the summary."""
    data_dir, rays_dir, out_dir = Path(data_dir), Path(rays_dir), Path(out_dir)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backend = sampling.set_backend(settings.get("sampling_backend") or "auto")
    seed = int(settings["seed"])
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(dev.type == "cpu", warn_only=True)

    store = RayStore(rays_dir, dev)
    meta = store.meta
    near, far = float(meta["near"]), float(meta["far"])
    background = background_color(settings).to(dev)
    loss_fn = data_loss_fn(settings)

    model = build_model(settings).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"], betas=(0.9, 0.999), eps=1e-8)
    amp_dtype = precision.autocast_dtype(bool(settings["amp"]), dev)
    # float16 needs loss scaling against gradient underflow; bfloat16 has float32's exponent range.
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    ckpt_dir = out_dir / CKPT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = TrainState(log_rows=[])
    ckpt, ckpt_path = load_latest_checkpoint(ckpt_dir, settings)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = TrainState(iteration=ckpt["iteration"], elapsed=ckpt["elapsed"], skipped=ckpt["skipped"],
                           log_rows=list(ckpt["log_rows"]))
        print(f"resuming {settings['variant']} from {ckpt_path} (iteration {state.iteration})",
              file=sys.stderr)
    last_good = ckpt_path

    total = int(settings["iterations"])
    n_images, height, width = int(meta["n_images"]), int(meta["height"]), int(meta["width"])
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=total, initial=state.iteration, disable=not show, desc=settings["variant"],
               dynamic_ncols=True)
    model.train()
    window_start, window_rays = time.perf_counter(), 0
    while state.iteration < total:
        it = state.iteration
        t0 = time.perf_counter()
        key = step_key(seed, it)
        frac = settings["precrop_frac"] if it < settings["precrop_iters"] else 1.0
        idx = sampling.sample_ray_indices(n_images, height, width, settings["batch_size"], key, frac)
        batch = store.batch(idx)
        rays = make_bundle(batch, near, far)
        target = composite_background(batch["rgba"], background)
        lr = learning_rate(settings, it)
        for group in optimizer.param_groups:
            group["lr"] = lr

        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
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
            state.bad_in_row += 1
            state.skipped += 1
            if scaler is not None:
                scaler.update()  # let the scaler lower its scale on overflow
            if state.bad_in_row >= settings["max_bad_steps"]:
                raise NerfpipeError(
                    f"training {settings['variant']}: non-finite loss or gradients in {state.bad_in_row} "
                    f"steps in a row, last at iteration {it}; last finite checkpoint: {last_good or 'none'}")
            warnings.warn(f"iteration {it}: non-finite loss or gradients, step skipped", stacklevel=1)
            optimizer.zero_grad(set_to_none=True)
        else:
            state.bad_in_row = 0
            if settings["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        state.iteration = it + 1
        state.elapsed += time.perf_counter() - t0
        window_rays += settings["batch_size"]
        bar.update(1)

        if state.iteration % settings["log_every"] == 0 or state.iteration == total:
            with torch.no_grad():
                mse = float(losses.mse(out["rgb"].float(), target))
            now = time.perf_counter()
            row = {"iteration": state.iteration, "elapsed_s": round(state.elapsed, 4), "lr": lr,
                   "loss": float(loss.detach()), "mse": mse, "psnr": -10.0 * math.log10(max(mse, 1e-10)),
                   "rays_per_s": window_rays / max(now - window_start, 1e-9)}
            row.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
            state.log_rows.append(row)
            window_start, window_rays = now, 0
            bar.set_postfix(psnr=f"{row['psnr']:.2f}", loss=f"{row['loss']:.4f}")
        if state.iteration % settings["ckpt_every"] == 0 or state.iteration == total:
            last_good = save_checkpoint(ckpt_dir, model, optimizer, scaler, state, settings)
    bar.close()
    return finish(out_dir, model, settings, state, backend, data_dir)


def finish(out_dir: Path, model: RadianceModel, settings: dict, state: TrainState, backend: str,
           data_dir: Path) -> dict:
    """Write the stage's outputs: final weights, resolved settings, log and summary."""
    n_params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    summary = {
        "scene": settings.get("scene", data_dir.name), "variant": settings["variant"],
        "method": settings["method"], "seed": settings["seed"], "iterations": state.iteration,
        "train_seconds": round(state.elapsed, 3),
        "rays_per_second": state.iteration * settings["batch_size"] / max(state.elapsed, 1e-9),
        "n_params": n_params, "final_loss": state.log_rows[-1]["loss"] if state.log_rows else None,
        "final_train_psnr": state.log_rows[-1]["psnr"] if state.log_rows else None,
        "backend": backend, "precision": precision.precision_name(bool(settings["amp"]), device),
        "skipped_steps": state.skipped, "samples_per_ray": model.samples_per_ray,
        "device": str(device),
    }
    nio.save_torch(out_dir / "model.pt", {"model": model.state_dict(), "settings": json.dumps(settings),
                                          "iteration": state.iteration})
    nio.write_json(out_dir / "config.json", settings)
    nio.write_csv(out_dir / "train_log.csv", state.log_rows, empty_header=("iteration",))
    nio.write_json(out_dir / "summary.json", summary)
    return summary
