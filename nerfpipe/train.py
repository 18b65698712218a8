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
switched off, it also writes event files into tb/ (see `TensorBoardLog`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerfpipe import config, guard, layout, losses, precision, sampling
from nerfpipe import io as nio
from nerfpipe.errors import NerfpipeError
from nerfpipe.models import RadianceModel, RayBundle, build_model
from nerfpipe.progress import LiveCsv, Progress
from nerfpipe.rays import load_ray_cache
from nerfpipe.render import background_color, composite_background

log = logging.getLogger(__name__)

CKPT_DIR = layout.CKPT_DIR
KEEP_CHECKPOINTS = 2
# Ray caches above this size are gathered from the memory map batch by batch instead of loaded
# (default of --max-in-memory; $NERFPIPE_MAX_IN_MEMORY_BYTES overrides it).
MAX_IN_MEMORY_BYTES = 2 << 30
MAX_IN_MEMORY_ENV = "NERFPIPE_MAX_IN_MEMORY_BYTES"
# TensorBoard event files go to this subfolder of the run folder.
TB_DIR = layout.TENSORBOARD_DIR
TENSORBOARD_ENV = "NERFPIPE_TENSORBOARD"


def max_in_memory_bytes(value: int | None = None) -> int:
    """The size above which the ray cache is read batch by batch from its memory map: `value`,
    else $NERFPIPE_MAX_IN_MEMORY_BYTES, else MAX_IN_MEMORY_BYTES."""
    source = "--max-in-memory"
    if value is None:
        text = os.environ.get(MAX_IN_MEMORY_ENV, "").strip()
        if not text:
            return MAX_IN_MEMORY_BYTES
        source = MAX_IN_MEMORY_ENV
        try:
            value = int(text)
        except ValueError:
            value = text
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NerfpipeError(f"{source}: expected a number of bytes >= 0, got {value!r}")
    return value


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


def data_loss_fn(settings: dict):
    if settings["loss"] == "mse":
        return losses.mse
    eps = settings["softl1_eps"]
    return lambda pred, target: losses.softl1(pred, target, eps)


class RayStore:
    """The training rays of a scene, from the ray cache (results/rays/{scene}): loaded onto the
    device when they fit in `max_in_memory` bytes, else gathered from the memory map batch by batch
    (the same rays in the same order either way, so the weights do not depend on the limit)."""

    def __init__(self, rays_dir: Path, device: torch.device, max_in_memory: int | None = None) -> None:
        cache = load_ray_cache(rays_dir)
        self.meta = cache["meta"]
        self.arrays = {k: cache[k] for k in ("origins", "directions", "viewdirs", "radii", "rgba")}
        self.n_rays = self.arrays["origins"].shape[0]
        total = sum(a.nbytes for a in self.arrays.values())
        self.device = device
        self.tensors = None
        self.in_memory = total <= max_in_memory_bytes(max_in_memory)
        if self.in_memory:
            self.tensors = {k: torch.from_numpy(np.array(a)).to(device) for k, a in self.arrays.items()}
        log.debug("ray cache %s: %d rays, %.1f MB, %s", rays_dir, self.n_rays, total / 1e6,
                  "in memory" if self.in_memory else "read batch by batch from its memory map")

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.tensors is not None:
            idx = indices.to(self.device)
            return {k: v[idx] for k, v in self.tensors.items()}
        # Read in ascending order (sequential pages), then put the rays back in the batch's order.
        idx = indices.cpu().numpy()
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        out = {}
        for k, a in self.arrays.items():
            rows = np.empty((len(idx), *a.shape[1:]), dtype=a.dtype)
            rows[order] = a[sorted_idx]
            out[k] = torch.from_numpy(rows).to(self.device)
        return out


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
        log.warning("training from scratch: %d checkpoint(s) in %s belong to another run (%s); removed",
                    len(stale), ckpt_dir, stale[0][1])
        for path, _ in stale:
            path.unlink(missing_ok=True)
    return found


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
    backend = sampling.set_backend(settings.get("sampling_backend") or "auto")
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
        idx = sampling.sample_ray_indices(n_images, height, width, settings["batch_size"], key, frac)
        batch = store.batch(idx)
        rays = make_bundle(batch, near, far)
        target = composite_background(batch["rgba"], background)
        lr = learning_rate(settings, it)
        for group in optimizer.param_groups:
            group["lr"] = lr

        step = training_step(model, optimizer, scaler, rays, target, key, background, loss_fn, settings,
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
        if state.iteration % settings["ckpt_every"] == 0 or state.iteration == total:
            last_good = save_checkpoint(ckpt_dir, model, optimizer, scaler, state, settings, fingerprint)
            _failpoint_pause(state.iteration)
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
        from nerfpipe.data.prepare import load_split

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
        from nerfpipe import cameras
        from nerfpipe.visualize import comparison_strip

        view, meta = self.view, self.view["meta"]
        h, w = int(meta["height"]), int(meta["width"])
        s = max(1, math.ceil(max(h, w) / self.VIEW_SIDE))
        focal = float(meta["focal"]) / s
        h, w = h // s, w // s
        rgba = view["rgba"][: h * s, : w * s].reshape(h, s, w, s, 4).mean(axis=(1, 3))
        background = background_color(self.settings)
        gt = composite_background(torch.from_numpy(rgba), background).numpy()
        # The rays of the whole view, as in nerfpipe.inference (which imports this module).
        origins, directions = cameras.camera_rays(h, w, focal, torch.from_numpy(view["pose"]).float())
        directions = directions.reshape(-1, 3)
        rays = {"origins": origins.reshape(-1, 3), "directions": directions,
                "viewdirs": directions / directions.norm(dim=-1, keepdim=True),
                "radii": torch.full((h * w, 1), cameras.pixel_radii(h, w, focal))}
        device = next(model.parameters()).device
        dtype = precision.autocast_dtype(bool(self.settings["amp"]), device)
        chunk, parts = int(self.settings["eval_chunk"]), []
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, h * w, chunk):
                    part = make_bundle({k: v[start:start + chunk].to(device) for k, v in rays.items()},
                                       float(meta["near"]), float(meta["far"]))
                    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                        parts.append(model(part, None, background.to(device))["rgb"].float().cpu())
        finally:
            model.train()
        pred = torch.cat(parts).reshape(h, w, 3).numpy()
        strip = comparison_strip(gt, np.clip(pred, 0.0, 1.0))
        self.writer.add_image(f"{view['split']}/rgb", np.asarray(strip), iteration, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


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
