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
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nerfpipe import config, guard, layout, losses, precision, sampling
from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError
from nerfpipe.models import RadianceModel, RayBundle, build_model
from nerfpipe.rays import load_ray_cache

CKPT_DIR = layout.CKPT_DIR
KEEP_CHECKPOINTS = 2
# Settings that fix the shapes of the parameters (named when weights do not fit a model).
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


def run_fingerprint(settings: dict, rays_meta: dict) -> str:
    """Identity of a training run: the settings that determine the weights and the content of the
    ray cache (which carries the data's). A checkpoint resumes only a run with the same identity."""
    return nio.fingerprint({"settings": config.weight_settings(settings),
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
        "settings": json.dumps(config.weight_settings(settings), sort_keys=True),
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
    mine = config.weight_settings(settings)
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
        print(f"training from scratch: {len(stale)} checkpoint(s) in {ckpt_dir} belong to another run "
              f"({stale[0][1]}); removed", file=sys.stderr)
        for path, _ in stale:
            path.unlink(missing_ok=True)
    return found


def train(data_dir: Path, rays_dir: Path, out_dir: Path, settings: dict, threads: int | None = None,
          device: str | None = None, progress: bool | None = None) -> dict:
    """Train `settings["method"]` on the scene; write model.pt, config.json, train_log.csv,
    summary.json into out_dir. Returns the summary."""
    data_dir, rays_dir, out_dir = Path(data_dir), Path(rays_dir), Path(out_dir)
    with guard.owned_output_dir(out_dir, "train", inputs=[data_dir, rays_dir],
                                legacy_names=(*layout.TRAIN_FILES.values(), CKPT_DIR)):
        return _train(data_dir, rays_dir, out_dir, settings, threads, device, progress)


def _train(data_dir: Path, rays_dir: Path, out_dir: Path, settings: dict, threads: int | None,
           device: str | None, progress: bool | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backend = sampling.set_backend(settings.get("sampling_backend") or "auto")
    seed = int(settings["seed"])
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(dev.type == "cpu", warn_only=True)

    store = RayStore(rays_dir, dev)
    meta = store.meta
    if "fingerprint" not in meta:
        raise NerfpipeError(f"{rays_dir / 'meta.json'}: no content fingerprint (written by an older "
                            "nerfpipe); rerun the rays stage")
    fingerprint = run_fingerprint(settings, meta)
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
    ckpt, ckpt_path = load_latest_checkpoint(ckpt_dir, settings, fingerprint)
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
            last_good = save_checkpoint(ckpt_dir, model, optimizer, scaler, state, settings, fingerprint)
            _failpoint_pause(state.iteration)
    bar.close()
    return finish(out_dir, model, settings, state, backend, data_dir,
                  {"fingerprint": fingerprint, "data_fingerprint": meta["data_fingerprint"]})


def _failpoint_pause(iteration: int) -> None:
    """Fault-injection hook for the interruption tests: with NERFPIPE_PAUSE_AFTER_CHECKPOINT=N the
    trainer stops itself (SIGSTOP) right after writing the checkpoint of iteration N, so a test can
    interrupt it at a known point on any machine, however fast. Unset, it does nothing."""
    pause_at = os.environ.get("NERFPIPE_PAUSE_AFTER_CHECKPOINT")
    if pause_at and pause_at.strip() == str(iteration):
        os.kill(os.getpid(), signal.SIGSTOP)


def finish(out_dir: Path, model: RadianceModel, settings: dict, state: TrainState, backend: str,
           data_dir: Path, identity: dict) -> dict:
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
    # identity: the run's fingerprint and the data's, so evaluation refuses another scene's data.
    nio.save_torch(out_dir / "model.pt", {"model": model.state_dict(), "settings": json.dumps(settings),
                                          "iteration": state.iteration, **identity})
    nio.write_json(out_dir / "config.json", settings)
    nio.write_csv(out_dir / "train_log.csv", state.log_rows, empty_header=("iteration",))
    nio.write_json(out_dir / "summary.json", summary)
    return summary
