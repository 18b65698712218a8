"""Speed of the sampling extension against the torch reference on CPU, at training sizes.

    python bench/sampling.py [--threads N] [--repeats K]

Prints a table (median of K repeats per op and backend) and ends with one line holding a JSON object
of the figures, e.g. {"bench": "sampling", "sample_pdf_speedup": 4.1, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from nerfpipe import sampling

RAYS = 4096
BINS = 64
PDF_SAMPLES = 128
IMAGES, HEIGHT, WIDTH = 100, 64, 64
PE_FREQS = 10
MLP_DEPTH, MLP_WIDTH = 4, 128
STEP_RAYS = 1024  # NeRF's default batch (N_rand) for the whole training-like step


def median_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each closure; the backends alternate within every repeat so that load from
    other processes hits them alike."""
    for fn in fns.values():
        fn()  # warm-up: allocator, thread pool
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def make_mlp(in_features: int) -> nn.Module:
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(MLP_DEPTH):
        layers += [nn.Linear(width, MLP_WIDTH), nn.ReLU()]
        width = MLP_WIDTH
    layers.append(nn.Linear(width, 4))
    return nn.Sequential(*layers)


def ops(backend: str, step_rays: int) -> dict[str, Callable[[], object]]:
    """The benchmarked closures of one backend ('ext' or 'torch'), inputs fixed."""
    g = torch.Generator().manual_seed(0)
    near, far = torch.full((RAYS,), 2.0), torch.full((RAYS,), 6.0)
    step_near, step_far = near[:step_rays], far[:step_rays]
    bins = torch.sort(2 + 4 * torch.rand(RAYS, BINS + 1, generator=g), dim=-1).values
    weights = torch.rand(RAYS, BINS, generator=g)
    points = torch.randn(RAYS * BINS, 3, generator=g)
    pick = {
        "torch": (sampling.sample_pdf_torch, sampling.stratified_endpoints_torch,
                  sampling.sample_ray_indices_torch, sampling.positional_encoding_torch),
        "ext": (sampling.sample_pdf_ext, sampling.stratified_endpoints_ext,
                sampling.sample_ray_indices_ext, sampling.positional_encoding_ext),
    }
    pdf_fn, strat_fn, rays_fn, pe_fn = pick[backend]

    def encode_fwd_bwd():
        x = points.clone().requires_grad_(True)
        y = pe_fn(x, PE_FREQS)
        y.backward(torch.ones_like(y))

    # Training-like step: sample rays -> stratified endpoints -> PE of the midpoints -> MLP -> backward.
    origins = torch.randn(IMAGES * HEIGHT * WIDTH, 3, generator=g)
    directions = torch.randn(IMAGES * HEIGHT * WIDTH, 3, generator=g)
    torch.manual_seed(0)
    mlp = make_mlp(3 * (1 + 2 * PE_FREQS))
    step_counter = iter(range(10**9))

    def train_step():
        key = next(step_counter)
        idx = rays_fn(IMAGES, HEIGHT, WIDTH, step_rays, key)
        o, d = origins[idx], directions[idx]
        t = strat_fn(step_near, step_far, BINS, True, key + 1)
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        x = (o[:, None, :] + d[:, None, :] * mids[..., None]).requires_grad_(True)
        out = mlp(pe_fn(x, PE_FREQS))
        loss = out.square().mean()
        mlp.zero_grad(set_to_none=True)
        loss.backward()

    return {
        "sample_pdf": lambda: pdf_fn(bins, weights, PDF_SAMPLES, True, 7),
        "stratified": lambda: strat_fn(near, far, BINS, True, 7),
        "ray_indices": lambda: rays_fn(IMAGES, HEIGHT, WIDTH, RAYS, 7),
        "positional_encoding": encode_fwd_bwd,
        "train_step": train_step,
    }


DESCRIPTIONS = {
    "sample_pdf": f"inverse-transform {RAYS}x{BINS} -> {PDF_SAMPLES}, stratified u",
    "stratified": f"stratified endpoints {RAYS}x{BINS}",
    "ray_indices": f"ray indices {RAYS} of {IMAGES}x{HEIGHT}x{WIDTH}",
    "positional_encoding": f"PE {RAYS}x{BINS}x3, L={PE_FREQS}, fwd+bwd",
    "train_step": "step: rays->strat->PE->MLP->bwd",
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per op (median reported)")
    parser.add_argument("--step-rays", type=int, default=STEP_RAYS,
                        help=f"rays of the training-like step, {BINS} samples each (default {STEP_RAYS})")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    built, reason = sampling.extension_status()
    backends = ["torch", "ext"] if built else ["torch"]
    closures = {b: ops(b, args.step_rays) for b in backends}
    timings: dict[str, dict[str, float]] = {b: {} for b in backends}
    for name in DESCRIPTIONS:
        for b, ms in median_ms({b: closures[b][name] for b in backends}, args.repeats).items():
            timings[b][name] = ms

    print(f"sampling benchmark: CPU, {torch.get_num_threads()} threads, median of {args.repeats} repeats, "
          f"torch {torch.__version__}; step = {args.step_rays} rays x {BINS} samples, MLP "
          f"{MLP_DEPTH}x{MLP_WIDTH}")
    if not built:
        print(f"extension not built ({reason}): reference timings only")
    header = f"{'op':<48} {'torch ms':>10} {'ext ms':>10} {'speedup':>8}"
    print(header)
    print("-" * len(header))
    figures: dict[str, object] = {"bench": "sampling", "threads": torch.get_num_threads(),
                                  "repeats": args.repeats, "step_rays": args.step_rays, "ext_built": built}
    for name, text in DESCRIPTIONS.items():
        ref = timings["torch"][name]
        ext = timings["ext"][name] if built else None
        ratio = ref / ext if ext else None
        ext_s = f"{ext:10.2f}" if ext is not None else f"{'-':>10}"
        ratio_s = f"{ratio:7.2f}x" if ratio is not None else f"{'-':>8}"
        print(f"{text:<48} {ref:10.2f} {ext_s} {ratio_s}")
        figures[f"{name}_torch_ms"] = round(ref, 3)
        figures[f"{name}_ext_ms"] = None if ext is None else round(ext, 3)
        figures[f"{name}_speedup"] = None if ratio is None else round(ratio, 2)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
