"""Speed of NeRF's training step with the occupancy-grid estimator against stratified + hierarchical
sampling, once the grid has converged, at the demo settings and at the paper's model size.

    python bench/estimator.py [--threads N] [--repeats K] [--train-iterations N] [--paper-iterations M]
                              [--scene diffuse] [--config config/occgrid.yaml] [--no-paper]

1. An embedded scene (the config's scene settings) and its ray cache are generated into a temporary folder.
2. Demo settings (config/occgrid.yaml: nerf and nerf_occ, 4x64 MLPs, 256 rays): nerf_occ trains for
   `--train-iterations` steps from scratch (the grid converges with the density), then whole training
   steps (nerfpipe.training.training_step) of nerf and nerf_occ alternate on the same ray batches for
   `--repeats` consecutive iterations (paired repeats; the grid's updates fall where they fall, so the
   totals include their cost). nerf's sample counts, and so its step time, do not depend on its weights:
   it is timed untrained.
3. Paper size (8x256 MLPs, 64 + 128 samples, 1024 rays; training one to convergence on a CPU is out of
   reach): the converged grid of the trained demo model (same scene, box and resolution) seeds an 8x256
   nerf_occ, which trains `--paper-iterations` steps inside it, then the same paired timing. The grid's
   updates stay paused throughout (the 8x256 density is untrained outside the grid, and an update would
   start a new warm-up there); the median time of 3 updates, timed apart on the same model and grid, is
   added to the occgrid total once per `occ_update_every` steps. The early stop gains little from a
   density this young, so its figure is conservative.

4. The estimator's own ops at the paper batch (1024 rays) in the demo's converged grid: march_rays, then
   packed_weights and packed_composite forward and backward (random densities and colours stand in for
   the MLP, which is not timed), by the torch reference (`*_torch`) and by the extension's kernels
   (`*_ext`, nerfpipe._ext: ext/csrc/occgrid.cpp); median of `--render-repeats` runs each, alternating,
   and their ratio. Skipped (figures null) when the extension is not built.

Prints samples per ray (stratified: MLP evaluations; occgrid: marched samples in occupied cells, the
density-only evaluations of the early stop, the samples rendered), step times (median, and the total
over the repeats), the speedup (ratio of the totals) and the quartiles of the per-repeat ratios, the
torch-vs-extension times of the estimator's ops, and ends with one JSON line of the figures, e.g.
{"bench": "estimator", "paper_speedup": 4.2, "render_ops_speedup": 3.1, ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nerfpipe import config as cfgmod
from nerfpipe import ext_backend, precision, sampling
from nerfpipe.estimators import marching, packed
from nerfpipe.models import build_model
from nerfpipe.raycache import RayStore
from nerfpipe.render import background_color, composite_background
from nerfpipe.stages.data import prepare_scene
from nerfpipe.stages.rays import build_ray_cache
from nerfpipe.training import data_loss_fn, learning_rate, make_bundle, step_key, training_step

CONFIG = "config/occgrid.yaml"
PAPER = {"net_depth": 8, "net_width": 256, "net_depth_fine": 8, "net_width_fine": 256, "n_samples": 64,
         "n_importance": 128, "batch_size": 1024}


class Trainer:
    """A model with its optimizer, training on the scene's ray cache one iteration at a time."""

    def __init__(self, settings: dict, store: RayStore) -> None:
        torch.manual_seed(int(settings["seed"]))
        self.settings = settings
        self.store = store
        self.model = build_model(settings).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings["lr"], eps=1e-8)
        self.background = background_color(settings)
        self.loss_fn = data_loss_fn(settings)
        self.dtype = precision.autocast_dtype(bool(settings["amp"]), torch.device("cpu"))
        self.psnr: list[float] = []

    def batch(self, iteration: int, batch_size: int | None = None):
        meta, key = self.store.meta, step_key(int(self.settings["seed"]), iteration)
        idx = sampling.sample_ray_indices(int(meta["n_images"]), int(meta["height"]), int(meta["width"]),
                                          batch_size or self.settings["batch_size"], key)
        batch = self.store.batch(idx)
        rays = make_bundle(batch, float(meta["near"]), float(meta["far"]))
        return rays, composite_background(batch["rgba"], self.background), key

    def step(self, iteration: int) -> float:
        """One training step at `iteration`; returns the seconds of training_step alone."""
        rays, target, key = self.batch(iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.settings, iteration)
        start = time.perf_counter()
        result = training_step(self.model, self.optimizer, None, rays, target, key, self.background,
                               self.loss_fn, self.settings, self.dtype)
        seconds = time.perf_counter() - start
        mse = float(((result.out["rgb"].detach().float() - target) ** 2).mean())
        self.psnr.append(-10 * math.log10(max(mse, 1e-10)))
        return seconds

    def counts(self) -> torch.Tensor | None:
        return self.model.sample_counts.clone() if hasattr(self.model, "sample_counts") else None


def train(trainer: Trainer, iterations: int, label: str, first: int = 0) -> None:
    """Train iterations first .. iterations - 1, with a progress line every fifth of them."""
    start = time.perf_counter()
    for it in range(first, iterations):
        trainer.step(it)
        if (it + 1) % max(iterations // 5, 1) == 0:
            stats = trainer.model.sample_stats()
            psnr = statistics.mean(trainer.psnr[-20:])
            print(f"  {label}: iteration {it + 1}/{iterations}, train PSNR {psnr:.2f} dB, occupied "
                  f"{stats['occupied_fraction']:.1%}, {time.perf_counter() - start:.0f} s", flush=True)


def timed_update(trainer: Trainer, iteration: int) -> float:
    """Seconds of one grid update of `trainer`'s model at `iteration` (as training_step would make it,
    under the same autocast); the grid is restored afterwards."""
    model, grid = trainer.model, trainer.model.grid
    saved = {k: v.clone() for k, v in grid.state_dict().items()}
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=trainer.dtype or torch.float32, enabled=trainer.dtype is not None):
        grid.update(model.query_density, iteration, step_key(int(trainer.settings["seed"]), iteration) + 2,
                    model.step_size)
    seconds = time.perf_counter() - start
    grid.load_state_dict(saved)
    return seconds


def paired(dense: Trainer, occ: Trainer, after: int, repeats: int, in_loop_updates: bool = True) -> dict:
    """Alternate whole training steps of the two on the same rays at `repeats` consecutive iterations from
    the first multiple of occ_update_every after `after`.

    in_loop_updates: the grid updates where training would (the window starts with one, so with repeats
    a multiple of the cadence they weigh as in training, more with fewer repeats). Otherwise the grid
    stays as it is while timing and the median of 3 updates, timed apart, is added to the occgrid total
    once per occ_update_every steps."""
    every = int(occ.settings["occ_update_every"])
    start = (after // every + 1) * every
    for trainer in (dense, occ):  # warm-up: allocator and thread pool (not timed, not counted)
        trainer.step(start - 1)
    grid = occ.model.grid
    if not in_loop_updates:
        grid.update_every = 10**9
    before = occ.counts()
    times = {"dense": [], "occ": []}
    for i in range(repeats):
        order = (("dense", dense), ("occ", occ))
        for name, trainer in order if i % 2 == 0 else order[::-1]:  # alternate which goes first
            times[name].append(trainer.step(start + i))
    rays, marched, prepass, rendered = (occ.counts() - before).tolist()
    update_s = 0.0
    if not in_loop_updates:
        update_s = statistics.median(timed_update(occ, start + every * (k + 1)) for k in range(3))
        times["occ"] = [t + update_s / every for t in times["occ"]]
        grid.update_every = every
    ratios = [d / o for d, o in zip(times["dense"], times["occ"], strict=True)]
    q25, _, q75 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return {
        "dense_samples_per_ray": dense.model.samples_per_ray,
        "occ_marched_per_ray": marched / rays, "occ_density_per_ray": prepass / rays,
        "occ_rendered_per_ray": rendered / rays, "occ_mlp_evals_per_ray": (prepass + rendered) / rays,
        "occupied_fraction": occ.model.sample_stats()["occupied_fraction"],
        "dense_step_ms": 1e3 * statistics.median(times["dense"]),
        "occ_step_ms": 1e3 * statistics.median(times["occ"]), "occ_update_ms_apart": 1e3 * update_s,
        "dense_total_s": sum(times["dense"]), "occ_total_s": sum(times["occ"]),
        "speedup": sum(times["dense"]) / sum(times["occ"]), "paired_q25": q25, "paired_q75": q75,
        "occ_faster_repeats": sum(r > 1 for r in ratios), "repeats": repeats, "first_iteration": start,
        "occ_train_psnr": statistics.mean(occ.psnr[-repeats:]),
    }


def render_ops(trainer: Trainer, iteration: int, repeats: int) -> dict:
    """Median ms of march + packed weights + composite, forward and backward, at the paper batch in
    `trainer`'s grid: the torch references against the extension's kernels (same rays, same samples)."""
    model, grid = trainer.model, trainer.model.grid
    rays, _, key = trainer.batch(iteration, PAPER["batch_size"])
    args = (rays.origins, rays.directions, rays.near, rays.far, grid.occupied, grid.aabb, grid.resolution,
            model.step_size, True, key)
    n_samples = len(marching.march_rays_torch(*args))
    g = torch.Generator().manual_seed(0)
    density = torch.rand(n_samples, generator=g) * 20  # stand-ins for the MLP's outputs
    rgb = torch.rand(n_samples, 3, generator=g)
    ops = {"torch": (marching.march_rays_torch, packed.packed_weights_torch, packed.packed_composite_torch),
           "ext": (marching.march_rays_ext, packed.packed_weights_ext, packed.packed_composite_ext)}

    def once(name: str) -> float:
        march, weights_fn, composite_fn = ops[name]
        sigma, colour = density.clone().requires_grad_(True), rgb.clone().requires_grad_(True)
        start = time.perf_counter()
        samples = march(*args)
        weights, _ = weights_fn(sigma, samples, rays.directions)
        out = composite_fn(weights, colour, samples, rays.near, rays.far, trainer.background)
        (out["rgb"].square().sum() + out["depth"].mean()).backward()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"torch": [], "ext": []}
    for name in ("torch", "ext"):  # warm-up
        once(name)
    for i in range(repeats):
        for name in ("torch", "ext") if i % 2 == 0 else ("ext", "torch"):
            times[name].append(once(name))
    torch_ms, ext_ms = (1e3 * statistics.median(times[k]) for k in ("torch", "ext"))
    n_rays = PAPER["batch_size"]
    return {"render_ops_rays": n_rays, "render_ops_samples_per_ray": n_samples / n_rays,
            "render_ops_torch_ms": torch_ms, "render_ops_ext_ms": ext_ms,
            "render_ops_speedup": torch_ms / ext_ms}


def report(name: str, row: dict) -> None:
    print(f"\n{name}: {row['repeats']} paired steps, grid {row['occupied_fraction']:.1%} occupied")
    print(f"  stratified: {row['dense_samples_per_ray']:.1f} MLP samples/ray, step "
          f"{row['dense_step_ms']:.1f} ms (median), {row['dense_total_s']:.2f} s in all")
    print(f"  occgrid:    {row['occ_marched_per_ray']:.1f} marched, {row['occ_density_per_ray']:.1f} "
          f"density-only, {row['occ_rendered_per_ray']:.1f} rendered samples/ray; step "
          f"{row['occ_step_ms']:.1f} ms (median), {row['occ_total_s']:.2f} s in all; train PSNR "
          f"{row['occ_train_psnr']:.2f} dB")
    print(f"  speedup {row['speedup']:.2f}x (ratio of the totals), paired {row['paired_q25']:.2f}-"
          f"{row['paired_q75']:.2f}x (q25-q75), occgrid faster in {row['occ_faster_repeats']}/"
          f"{row['repeats']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=32, help="paired training steps per setting")
    parser.add_argument("--train-iterations", type=int, default=1000, help="demo nerf_occ training steps")
    parser.add_argument("--paper-iterations", type=int, default=60, help="8x256 nerf_occ steps in the grid")
    parser.add_argument("--paper-repeats", type=int, default=8,
                        help="paired steps at paper size (a dense 8x256 step takes seconds on a CPU)")
    parser.add_argument("--scene", default="diffuse")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-size model")
    parser.add_argument("--render-repeats", type=int, default=20,
                        help="runs of the estimator's ops per backend (torch reference vs extension)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = cfgmod.load_config(args.config)
    demo = {name: cfgmod.resolve_variant(cfg, name, seed=0) for name in ("nerf", "nerf_occ")}
    figures: dict[str, object] = {"bench": "estimator", "threads": torch.get_num_threads(),
                                  "scene": args.scene, "train_iterations": args.train_iterations,
                                  "precision": precision.precision_name(bool(demo["nerf"]["amp"]),
                                                                        torch.device("cpu"))}
    print(f"estimator benchmark: CPU, {torch.get_num_threads()} threads, {figures['precision']}, scene "
          f"{args.scene} ({args.config})", flush=True)
    with tempfile.TemporaryDirectory(prefix="nerfpipe-bench-") as tmp:
        data, rays = Path(tmp) / "data" / args.scene, Path(tmp) / "rays" / args.scene
        prepare_scene(args.scene, cfgmod.resolve_scene(cfg, args.scene), data)
        build_ray_cache(data, rays)
        store = RayStore(rays, torch.device("cpu"), None)

        occ = Trainer(demo["nerf_occ"], store)
        train(occ, args.train_iterations, "demo nerf_occ")
        rows = {"demo": paired(Trainer(demo["nerf"], store), occ, args.train_iterations, args.repeats)}
        report("demo settings (4x64 MLPs, 32+64 samples, 256 rays)", rows["demo"])
        if ext_backend.extension_status()[0]:
            ops = render_ops(occ, args.train_iterations, args.render_repeats)
            print(f"\nestimator ops at the paper batch ({ops['render_ops_rays']} rays, "
                  f"{ops['render_ops_samples_per_ray']:.1f} samples/ray, march + weights + composite, "
                  f"forward and backward): torch {ops['render_ops_torch_ms']:.2f} ms, extension "
                  f"{ops['render_ops_ext_ms']:.2f} ms (median), {ops['render_ops_speedup']:.2f}x")
        else:
            ops = dict.fromkeys(("render_ops_rays", "render_ops_samples_per_ray", "render_ops_torch_ms",
                                 "render_ops_ext_ms", "render_ops_speedup"))
            print("\nestimator ops: skipped (nerfpipe._ext is not built)")
        figures.update({k: round(v, 3) if isinstance(v, float) else v for k, v in ops.items()})

        if not args.no_paper:
            paper = {name: {**s, **PAPER} for name, s in demo.items()}
            big = Trainer(paper["nerf_occ"], store)
            grid = big.model.grid
            grid.load_state_dict(occ.model.grid.state_dict())
            # Updates paused while the 8x256 density learns inside the converged grid (iteration 0, the only
            # multiple of 10^9, is skipped); then on, at the configured cadence, past the warm-up.
            grid.update_every, grid.warmup_iterations = 10**9, 0
            train(big, args.paper_iterations, "8x256 nerf_occ in the demo's grid", first=1)
            # Updates stay paused while timing too: with an 8x256 density trained only inside the grid, an
            # update would refill it where that density is still untrained (a new warm-up; the grid grew
            # from 7% to 27% occupied when tried). Their cost is timed apart and added.
            rows["paper"] = paired(Trainer(paper["nerf"], store), big, args.paper_iterations,
                                   args.paper_repeats, in_loop_updates=False)
            report("paper size (8x256 MLPs, 64+128 samples, 1024 rays)", rows["paper"])
    for name, row in rows.items():
        for key, value in row.items():
            figures[f"{name}_{key}"] = round(value, 3) if isinstance(value, float) else value
    if "paper" in rows:
        figures["paper_speedup_at_least_3x"] = rows["paper"]["speedup"] >= 3.0
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
