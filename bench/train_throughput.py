"""Training throughput of the default models and of NeRF's original 8x256 MLPs (a benchmark,
not a test): rays/s of full training steps, matmul FLOP/s achieved by those steps (counted with
forward hooks on every Linear layer, times 3 for the backward pass), and that as a fraction of
this machine's fp32 matmul peak measured in the same run. Ends with one JSON line.

    python bench/train_throughput.py [--threads N] [--steps N] [--methods nerf,mipnerf360]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nerfpipe import config as cfgmod
from nerfpipe.models import RayBundle, build_model
from nerfpipe.training import data_loss_fn


def matmul_peak_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def linear_forward_flops(model: torch.nn.Module, run) -> int:
    """Matmul FLOPs of the forward passes of every nn.Linear during `run()` (2 x in x out per row).
    A training step costs about 3x this (the backward pass computes two matmuls per layer); the
    double backward of Ref-NeRF's density normals is not counted, so its figure is a lower bound."""
    total = 0

    def hook(layer: torch.nn.Linear, inputs, output) -> None:
        nonlocal total
        rows = inputs[0].numel() // layer.in_features
        total += 2 * rows * layer.in_features * layer.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total


def random_rays(n: int) -> RayBundle:
    g = torch.Generator().manual_seed(0)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 4.0
    directions = torch.nn.functional.normalize(-origins + 0.3 * torch.randn(n, 3, generator=g), dim=-1)
    return RayBundle(origins, directions, directions, torch.full((n, 1), 0.01), torch.full((n,), 2.0),
                     torch.full((n,), 6.0))


def bench_model(settings: dict, batch: int, steps: int) -> dict:
    model = build_model(settings)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rays, target, bg = random_rays(batch), torch.rand(batch, 3), torch.ones(3)
    loss_fn = data_loss_fn(settings)

    def step(i: int) -> None:
        opt.zero_grad()
        out = model(rays, i << 4, bg)
        sum(model.loss_terms(out, rays, target, loss_fn).values()).backward()
        opt.step()

    step(0)
    flops = 3 * linear_forward_flops(model, lambda: step(1))
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(i + 2)
        times.append(time.perf_counter() - t0)
    sec = sorted(times)[len(times) // 2]
    return {"rays_per_s": batch / sec, "step_s": sec, "gflops": flops / sec / 1e9,
            "n_params": sum(p.numel() for p in model.parameters()), "samples_per_ray": model.samples_per_ray}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--methods", default="nerf,mipnerf,mipnerf360,refnerf")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = cfgmod.load_config(args.config)
    peak = matmul_peak_gflops()
    rows = {}
    for method in args.methods.split(","):
        s = cfgmod.resolve_variant(cfg, method, seed=0)
        rows[f"{method} (default)"] = bench_model(s, s["batch_size"], args.steps)
    big = cfgmod.resolve_variant(cfg, "nerf", seed=0)
    big.update(net_depth=8, net_width=256, net_depth_fine=8, net_width_fine=256, n_samples=64,
               n_importance=128)
    rows["nerf 8x256, 64+128 samples"] = bench_model(big, 1024, max(2, args.steps // 2))

    print(f"threads: {args.threads}   fp32 matmul peak (1024^3, best of 20): {peak:.1f} GFLOP/s\n")
    print(f"{'model':32s} {'rays/s':>10s} {'step s':>8s} {'GFLOP/s':>9s} {'of peak':>8s} {'params':>9s}")
    for name, r in rows.items():
        print(f"{name:32s} {r['rays_per_s']:10.0f} {r['step_s']:8.3f} {r['gflops']:9.1f} "
              f"{r['gflops'] / peak:8.1%} {r['n_params']:9d}")
    figures = {"bench": "train_throughput", "threads": args.threads, "fp32_peak_gflops": round(peak, 1)}
    for name, r in rows.items():
        key = name.split(" ")[0] if "default" in name else "nerf_8x256"
        figures[f"{key}_rays_per_s"] = round(r["rays_per_s"], 1)
        figures[f"{key}_fraction_of_peak"] = round(r["gflops"] / peak, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
