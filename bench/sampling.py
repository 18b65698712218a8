"""Speed of the sampling extension against the torch reference on CPU, at training sizes.

    python bench/sampling.py [--threads N] [--repeats K] [--methods nerf,mipnerf,...]

Per op, and per whole training step of every method with its default settings (config/config.yaml:
model, batch, precision), the time through the extension and through the reference. The two backends
alternate within every repeat; prints medians, their ratio, the quartiles of the per-repeat (paired)
ratios and how many repeats the extension won, and ends with one line holding a JSON object of the
figures, e.g. {"bench": "sampling", "sample_pdf_speedup": 4.1, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from train_throughput import random_rays

from nerfpipe import config as cfgmod
from nerfpipe import encoding, encoding_ext, ext_backend, precision, random_keys, sampling
from nerfpipe.models import build_model
from nerfpipe.training import data_loss_fn, training_step

RAYS = 4096
BINS = 64
PDF_SAMPLES = 128
IMAGES, HEIGHT, WIDTH = 100, 64, 64
PE_FREQS = 10
IPE_FREQS = 16  # mip-NeRF's degrees 0..15
CONFIG = "config/config.yaml"


def timed_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times (ms) of each closure per repeat; the backends alternate within every repeat so that load
    from other processes hits them alike, and repeat i of one backend pairs with repeat i of the other."""
    for fn in fns.values():
        fn()  # warm-up: allocator, thread pool
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def op_closures(backend: str) -> dict[str, Callable[[], object]]:
    """The single-op closures of one backend ('ext' or 'torch'), inputs fixed."""
    g = torch.Generator().manual_seed(0)
    near, far = torch.full((RAYS,), 2.0), torch.full((RAYS,), 6.0)
    bins = torch.sort(2 + 4 * torch.rand(RAYS, BINS + 1, generator=g), dim=-1).values
    weights = torch.rand(RAYS, BINS, generator=g)
    points = torch.randn(RAYS * BINS, 3, generator=g)
    variances = 1e-3 * torch.rand(RAYS * BINS, 3, generator=g)
    pick = {
        "torch": (sampling.sample_pdf_torch, sampling.stratified_endpoints_torch,
                  sampling.sample_ray_indices_torch, encoding_ext.positional_encoding_torch,
                  encoding.integrated_pos_enc),
        "ext": (sampling.sample_pdf_ext, sampling.stratified_endpoints_ext,
                sampling.sample_ray_indices_ext, encoding_ext.positional_encoding_ext,
                encoding_ext.integrated_pos_enc_ext),
    }
    pdf_fn, strat_fn, rays_fn, pe_fn, ipe_fn = pick[backend]

    def encode_fwd_bwd():
        x = points.clone().requires_grad_(True)
        y = pe_fn(x, PE_FREQS)
        y.backward(torch.ones_like(y))

    def ipe_fwd_bwd():
        mean, var = points.clone().requires_grad_(True), variances.clone().requires_grad_(True)
        y = ipe_fn(mean, var, IPE_FREQS)
        y.backward(torch.ones_like(y))

    return {
        "sample_pdf": lambda: pdf_fn(bins, weights, PDF_SAMPLES, True, 7),
        "stratified": lambda: strat_fn(near, far, BINS, True, 7),
        "ray_indices": lambda: rays_fn(IMAGES, HEIGHT, WIDTH, RAYS, 7),
        "positional_encoding": encode_fwd_bwd,
        "ipe_forward": lambda: ipe_fn(points, variances, IPE_FREQS),
        "ipe_fwd_bwd": ipe_fwd_bwd,
    }


def step_closure(settings: dict, backend: str) -> Callable[[], None]:
    """One whole training step of `settings` (nerfpipe.training.training_step after the image sampler:
    render every level, losses, backward, gradient clip, Adam) with the sampling backend `backend`.
    Rays are random but fixed; the batch indices come from the image sampler as in training."""
    torch.manual_seed(0)
    model = build_model(settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = settings["batch_size"]
    pool = random_rays(IMAGES * HEIGHT * WIDTH)
    target_pool = torch.rand(IMAGES * HEIGHT * WIDTH, 3)
    background = torch.ones(3)
    loss_fn = data_loss_fn(settings)
    dtype = precision.autocast_dtype(bool(settings["amp"]), torch.device("cpu"))
    counter = iter(range(10**9))

    def step() -> None:
        ext_backend.set_backend(backend)
        key = random_keys.derive_key(int(settings["seed"]), next(counter))
        idx = sampling.sample_ray_indices(IMAGES, HEIGHT, WIDTH, batch, key)
        training_step(model, optimizer, None, pool.index(idx), target_pool[idx], key, background, loss_fn,
                      settings, dtype)

    return step


OP_DESCRIPTIONS = {
    "sample_pdf": f"inverse-transform {RAYS}x{BINS} -> {PDF_SAMPLES}, stratified u",
    "stratified": f"stratified endpoints {RAYS}x{BINS}",
    "ray_indices": f"ray indices {RAYS} of {IMAGES}x{HEIGHT}x{WIDTH}",
    "positional_encoding": f"PE {RAYS}x{BINS}x3, L={PE_FREQS}, fwd+bwd",
    "ipe_forward": f"IPE {RAYS}x{BINS}x3, L={IPE_FREQS}, fwd",
    "ipe_fwd_bwd": f"IPE {RAYS}x{BINS}x3, L={IPE_FREQS}, fwd+bwd",
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=21, help="timed repeats per op (median reported)")
    parser.add_argument("--config", default=CONFIG, help=f"config of the timed variants (default {CONFIG})")
    parser.add_argument("--methods", default=",".join(cfgmod.METHODS),
                        help="variants whose whole training step is timed (default: every method)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    built, reason = ext_backend.extension_status()
    backends = ["torch", "ext"] if built else ["torch"]
    cfg = cfgmod.load_config(args.config)
    variants = {m: cfgmod.resolve_variant(cfg, m, seed=0) for m in args.methods.split(",") if m}

    rows: dict[str, str] = dict(OP_DESCRIPTIONS)
    closures: dict[str, dict[str, Callable[[], object]]] = {b: op_closures(b) for b in backends}
    for method, settings in variants.items():
        name = f"step_{method}"
        rows[name] = f"whole training step: {method}, {settings['batch_size']} rays"
        for b in backends:
            closures[b][name] = step_closure(settings, b)
    timings: dict[str, dict[str, list[float]]] = {b: {} for b in backends}
    for name in rows:
        for b, ms in timed_ms({b: closures[b][name] for b in backends}, args.repeats).items():
            timings[b][name] = ms
    ext_backend.set_backend("auto")

    dtype = {precision.precision_name(bool(s["amp"]), torch.device("cpu")) for s in variants.values()}
    openmp = bool(built and ext_backend.extension_openmp())
    print(f"sampling benchmark: CPU, {torch.get_num_threads()} threads, median of {args.repeats} repeats, "
          f"torch {torch.__version__}; training steps: {args.config}, precision {', '.join(sorted(dtype))}")
    if not built:
        print(f"extension not built ({reason}): reference timings only")
    elif not openmp:
        print("warning: the extension was built without OpenMP, its CPU kernels run on one thread")
    # speedup: ratio of the medians; paired: quartiles of the per-repeat ratios torch_i / ext_i, and in how
    # many repeats the extension was faster.
    header = (f"{'op':<48} {'torch ms':>10} {'ext ms':>10} {'speedup':>8} {'paired q25-q75':>15} "
              f"{'ext faster':>10}")
    print(header)
    print("-" * len(header))
    figures: dict[str, object] = {"bench": "sampling", "threads": torch.get_num_threads(),
                                  "repeats": args.repeats, "ext_built": built, "ext_openmp": openmp}
    for name, text in rows.items():
        ref = statistics.median(timings["torch"][name])
        ext = statistics.median(timings["ext"][name]) if built else None
        ratio = ref / ext if ext else None
        ext_s = f"{ext:10.2f}" if ext is not None else f"{'-':>10}"
        ratio_s = f"{ratio:7.2f}x" if ratio is not None else f"{'-':>8}"
        paired_s, faster_s = f"{'-':>15}", f"{'-':>10}"
        figures[f"{name}_torch_ms"] = round(ref, 3)
        figures[f"{name}_ext_ms"] = None if ext is None else round(ext, 3)
        figures[f"{name}_speedup"] = None if ratio is None else round(ratio, 2)
        if built:
            paired = [t / e for t, e in zip(timings["torch"][name], timings["ext"][name], strict=True)]
            q25, _, q75 = statistics.quantiles(paired, n=4) if len(paired) > 1 else (paired[0],) * 3
            faster = sum(r > 1 for r in paired)
            paired_s = f"{q25:6.2f}-{q75:.2f}x".rjust(15)
            faster_s = f"{faster}/{len(paired)}".rjust(10)
            figures[f"{name}_paired_q25"] = round(q25, 3)
            figures[f"{name}_paired_q75"] = round(q75, 3)
            figures[f"{name}_ext_faster_repeats"] = faster
        print(f"{text:<48} {ref:10.2f} {ext_s} {ratio_s} {paired_s} {faster_s}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
