"""Training stage: fit one variant to one scene's ray cache.

Every random number of a step (ray batch, stratified jitter, inverse-transform u) comes from
counter-based hashes of a key derived from (seed, iteration), in the torch reference and the
extension alike, so the sampling ops carry no state. Weight initialisation uses torch's seeded
generator, whose state the checkpoint keeps with the model, optimizer, grad-scaler, iteration,
log and elapsed time; numpy's global generator is not used. A run killed at any point and
resumed from its last checkpoint therefore ends with bit-identical weights on CPU.

While it runs, training reports progress (nerfpipe.progress: a bar on a terminal, else a line every
--progress-interval seconds) and appends each log row to train_log.csv, flushed, so a running job
can be plotted; on resume the file is rewritten with the rows of the checkpoint, and at the end it
is rewritten atomically with every row. With TensorBoard installed (the `tensorboard` extra) and not
switched off, it also writes event files into tb/ (nerfpipe.tensorboard_log). Checkpoints and the
run identity that decides whether one resumes live in nerfpipe.checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
import warnings
from pathlib import Path

import torch

from nerfpipe import ext_backend, guard, layout, losses, precision, sampling
from nerfpipe import io as nio
from nerfpipe.checkpoints import TrainState, load_latest_checkpoint, run_fingerprint, save_checkpoint
from nerfpipe.errors import NerfpipeError
from nerfpipe.models import RadianceModel, build_model
from nerfpipe.progress import LiveCsv, Progress
from nerfpipe.raycache import RayStore, max_in_memory_bytes
from nerfpipe.render import background_color, composite_background
from nerfpipe.tensorboard_log import TensorBoardLog, want_tensorboard
from nerfpipe.training import data_loss_fn, learning_rate, make_bundle, step_key, training_step

log = logging.getLogger(__name__)

CKPT_DIR = layout.CKPT_DIR


def train(data_dir: Path, rays_dir: Path, out_dir: Path, settings: dict, threads: int | None = None,
          device: str | None = None, progress: bool | str | None = None, tensorboard: bool | None = None,
          tensorboard_every: int | None = None, max_in_memory: int | None = None) -> dict:
    """Train `settings["method"]` on the scene; write model.pt, config.json, train_log.csv,
    summary.json into out_dir. Returns the summary.

    progress: None (a bar on a terminal, else log lines), True (bar), "log", or False (silent).
    tensorboard: write tb/ (True), not (False), or None (want_tensorboard: $NERFPIPE_TENSORBOARD,
    else when installed); tensorboard_every: iterations between validation images (default:
    ckpt_every). max_in_memory: see RayStore (default: max_in_memory_bytes()).
    """
    data_dir, rays_dir, out_dir = Path(data_dir), Path(rays_dir), Path(out_dir)
    use_tb = want_tensorboard(tensorboard)
    limit = max_in_memory_bytes(max_in_memory)
    if tensorboard_every is not None and (isinstance(tensorboard_every, bool) or tensorboard_every < 1):
        raise NerfpipeError("--tensorboard-every: expected a number of iterations >= 1, "
                            f"got {tensorboard_every}")
    with guard.owned_output_dir(out_dir, "train", inputs=[data_dir, rays_dir],
                                legacy_names=(*layout.TRAIN_FILES.values(), CKPT_DIR)):
        return _train(data_dir, rays_dir, out_dir, settings, threads, device, progress,
                      use_tb, tensorboard_every, limit)


def _train(data_dir: Path, rays_dir: Path, out_dir: Path, settings: dict, threads: int | None,
           device: str | None, progress: bool | str | None, use_tb: bool = False,
           tensorboard_every: int | None = None, max_in_memory: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backend = ext_backend.set_backend(settings.get("sampling_backend") or "auto")
    seed = int(settings["seed"])
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(dev.type == "cpu", warn_only=True)

    store = RayStore(rays_dir, dev, max_in_memory)
    meta = store.meta
    if "fingerprint" not in meta:
        raise NerfpipeError(f"{rays_dir / 'meta.json'}: no content fingerprint (written by an older "
                            "nerfpipe); rerun the rays stage")
    fingerprint = run_fingerprint(settings, meta)
    near, far = float(meta["near"]), float(meta["far"])
    background = background_color(settings).to(dev)
    loss_fn = data_loss_fn(settings)
    # A multiscale cache (mip-NeRF sec. 5) holds images of several sizes: rays are drawn uniformly over
    # all of them (as mip-NeRF's multiscale batches) and each weighted by its pixel area (lossmult).
    multiscale = "lossmult" in store.arrays
    if multiscale and settings["precrop_iters"] > 0:
        log.warning("%s: precrop is not applied to a multiscale ray cache (images of several sizes)",
                    settings["variant"])

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
        log.info("resuming %s from %s (iteration %d)", settings["variant"], ckpt_path, state.iteration)
    last_good = ckpt_path

    total = int(settings["iterations"])
    n_images, height, width = int(meta["n_images"]), int(meta["height"]), int(meta["width"])
    # train_log.csv holds exactly the rows so far (those of the checkpoint on resume) and grows.
    live_log = LiveCsv(out_dir / layout.TRAIN_FILES["train_log"], empty_header=("iteration",))
    live_log.reset(state.log_rows)
    tb = TensorBoardLog(out_dir, data_dir, settings, state.iteration, tensorboard_every) if use_tb else None
    bar = Progress(total, f"train {settings['variant']}", unit="iteration", initial=state.iteration,
                   mode=progress)
    log.debug("training %s: %d iterations from %d, device %s, backend %s, precision %s",
              settings["variant"], total, state.iteration, dev, backend,
              precision.precision_name(bool(settings["amp"]), dev))
    model.train()
    window_start, window_rays = time.perf_counter(), 0
    while state.iteration < total:
        it = state.iteration
        t0 = time.perf_counter()
        key = step_key(seed, it)
        frac = settings["precrop_frac"] if it < settings["precrop_iters"] else 1.0
        if multiscale:
            idx = sampling.sample_ray_indices(1, 1, store.n_rays, settings["batch_size"], key)
        else:
            idx = sampling.sample_ray_indices(n_images, height, width, settings["batch_size"], key, frac)
        batch = store.batch(idx)
        rays = make_bundle(batch, near, far)
        target = composite_background(batch["rgba"], background)
        lr = learning_rate(settings, it)
        for group in optimizer.param_groups:
            group["lr"] = lr

        step_loss = data_loss_fn(settings, batch["lossmult"]) if multiscale else loss_fn
        step = training_step(model, optimizer, scaler, rays, target, key, background, step_loss, settings,
                             amp_dtype)
        out, terms, loss = step.out, step.terms, step.loss
        if not step.finite:
            state.bad_in_row += 1
            state.skipped += 1
            if state.bad_in_row >= settings["max_bad_steps"]:
                raise NerfpipeError(
                    f"training {settings['variant']}: non-finite loss or gradients in {state.bad_in_row} "
                    f"steps in a row, last at iteration {it}; last finite checkpoint: {last_good or 'none'}")
            warnings.warn(f"iteration {it}: non-finite loss or gradients, step skipped", stacklevel=1)
        else:
            state.bad_in_row = 0
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
            live_log.append(row, state.log_rows)
            if tb is not None:
                tb.scalars(row)
            window_start, window_rays = now, 0
            bar.set_postfix(psnr=f"{row['psnr']:.2f}", loss=f"{row['loss']:.4f}")
        if bar.due():
            bar.log(*_progress_fields(loss, out, target, bar.window_rate() * settings["batch_size"]))
        if tb is not None and tb.image_due(state.iteration, total):
            tb.image(model, state.iteration)
        checkpoint = state.iteration % settings["ckpt_every"] == 0 or state.iteration == total
        if checkpoint:
            last_good = save_checkpoint(ckpt_dir, model, optimizer, scaler, state, settings, fingerprint)
        _failpoint_pause(state.iteration, checkpoint)
    bar.close()
    if tb is not None:
        tb.close()
    return finish(out_dir, model, settings, state, backend, data_dir,
                  {"fingerprint": fingerprint, "data_fingerprint": meta["data_fingerprint"]})


def _progress_fields(loss: torch.Tensor, out: dict, target: torch.Tensor, rays_per_s: float) -> list[str]:
    """The training figures of one progress line (computed only for the lines that are written)."""
    with torch.no_grad():
        mse = float(losses.mse(out["rgb"].float(), target))
    psnr = -10.0 * math.log10(mse) if mse > 0 else math.inf
    return [f"loss {float(loss.detach()):.5g}", f"train PSNR {psnr:.2f} dB", f"{rays_per_s:,.0f} rays/s"]


def _failpoint_pause(iteration: int, checkpoint: bool) -> None:
    """Fault-injection hooks for the interruption tests: the trainer stops itself (SIGSTOP) right
    after writing the checkpoint of iteration N (NERFPIPE_PAUSE_AFTER_CHECKPOINT=N), or after
    iteration N whether or not it wrote one (NERFPIPE_PAUSE_AT_ITERATION=N, e.g. between two
    checkpoints), so a test can interrupt it at a known point on any machine, however fast. Unset,
    they do nothing."""
    at = str(iteration)
    if (checkpoint and os.environ.get("NERFPIPE_PAUSE_AFTER_CHECKPOINT", "").strip() == at) or \
            os.environ.get("NERFPIPE_PAUSE_AT_ITERATION", "").strip() == at:
        os.kill(os.getpid(), signal.SIGSTOP)


def finish(out_dir: Path, model: RadianceModel, settings: dict, state: TrainState, backend: str,
           data_dir: Path, identity: dict) -> dict:
    """Write the stage's outputs: final weights, resolved settings, log and summary."""
    import platform

    n_params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    # The hardware and the dataset a run was trained on, for the report's comparison with the
    # published figures (nerfpipe.reporting.published): the GPU's name, else the CPU model.
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        except OSError:
            cpuinfo = []
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        device_name = models[0] if models else (platform.processor() or platform.machine() or "CPU")
    data_meta = nio.read_json(data_dir / "meta.json") if (data_dir / "meta.json").is_file() else {}
    data_source = data_meta.get("source") if isinstance(data_meta, dict) else None
    summary = {
        "scene": settings.get("scene", data_dir.name), "variant": settings["variant"],
        "method": settings["method"], "seed": settings["seed"], "iterations": state.iteration,
        "train_seconds": round(state.elapsed, 3),
        "rays_per_second": state.iteration * settings["batch_size"] / max(state.elapsed, 1e-9),
        "n_params": n_params, "final_loss": state.log_rows[-1]["loss"] if state.log_rows else None,
        "final_train_psnr": state.log_rows[-1]["psnr"] if state.log_rows else None,
        "backend": backend, "precision": precision.precision_name(bool(settings["amp"]), device),
        "skipped_steps": state.skipped, "samples_per_ray": model.samples_per_ray,
        "device": str(device), "device_name": device_name, "data_source": data_source,
    }
    # identity: the run's fingerprint and the data's, so evaluation refuses another scene's data.
    nio.save_torch(out_dir / "model.pt", {"model": model.state_dict(), "settings": json.dumps(settings),
                                          "iteration": state.iteration, **identity})
    nio.write_json(out_dir / "config.json", settings)
    nio.write_csv(out_dir / "train_log.csv", state.log_rows, empty_header=("iteration",))
    nio.write_json(out_dir / "summary.json", summary)
    return summary
