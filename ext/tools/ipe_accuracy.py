"""Accuracy of the float64 encoding kernels of nerfpipe._ext against a 50-digit mpmath reference.

    python ext/tools/ipe_accuracy.py [--device cuda] [--points 400] [--freqs 16]

Prints, per frequency octave k, the largest absolute error of the integrated positional encoding
sin/cos(2^k mu) exp(-0.5 4^k var) and of the plain positional encoding sin/cos(2^k x), in units of the
float64 epsilon (2^-52), and the same for the torch reference nerfpipe.encoding.integrated_pos_enc. The
variances are log-uniform in [1e-12, 1], which covers the octaves where the damping is neither ~1 nor
~0 (the regime in which an error of the damping shows). No GPU is needed for --device cpu.
"""

from __future__ import annotations

import argparse
import math

import mpmath
import torch

from nerfpipe import encoding, ext_backend

EPS = 2.0**-52


def _reference(mean: torch.Tensor, var: torch.Tensor, num_freqs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ipe [P, 2*C*L], pe [P, 2*C*L] in the IPE layout) to 50 digits, rounded to float64 at the end."""
    mpmath.mp.dps = 50
    points, channels = mean.shape
    ipe = torch.empty(points, 2 * channels * num_freqs, dtype=torch.float64)
    pe = torch.empty_like(ipe)
    half = channels * num_freqs
    for p in range(points):
        for c in range(channels):
            mu = mpmath.mpf(float(mean[p, c]))
            v = mpmath.mpf(float(var[p, c]))
            for k in range(num_freqs):
                a = mpmath.mpf(2) ** k
                s, co = mpmath.sin(a * mu), mpmath.cos(a * mu)
                w = mpmath.exp(-a * a * v / 2)
                j = k * channels + c
                ipe[p, j], ipe[p, half + j] = float(s * w), float(co * w)
                pe[p, j], pe[p, half + j] = float(s), float(co)
    return ipe, pe


def _per_octave(err: torch.Tensor, channels: int, num_freqs: int) -> list[float]:
    """max |err| per octave k over both blocks, in units of EPS."""
    e = err.abs().reshape(err.shape[0], 2, num_freqs, channels)
    return [float(e[:, :, k].max()) / EPS for k in range(num_freqs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--freqs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    built, why = ext_backend.extension_status()
    if not built:
        raise SystemExit(f"nerfpipe._ext is not built: {why}")
    from nerfpipe import _ext

    g = torch.Generator().manual_seed(args.seed)
    shape = (args.points, args.channels)
    mean = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    var = torch.exp(torch.empty(shape, dtype=torch.float64).uniform_(math.log(1e-12), 0.0, generator=g))
    ipe_ref, pe_ref = _reference(mean, var, args.freqs)
    dev = torch.device(args.device)
    ipe = _ext.integrated_pos_enc_forward(mean.to(dev), var.to(dev), args.freqs).cpu()
    pe = _ext.positional_encoding_forward(mean.to(dev), args.freqs, False).cpu()
    # PE is [sin_0, cos_0, sin_1, ...] by octave; bring it to the IPE layout [sin block | cos block].
    pe = pe.reshape(args.points, args.freqs, 2, args.channels).transpose(1, 2).reshape(pe_ref.shape)
    ipe_torch = encoding.integrated_pos_enc(mean, var, args.freqs)
    rows = {
        f"ext IPE ({args.device})": _per_octave(ipe - ipe_ref, args.channels, args.freqs),
        f"ext PE ({args.device})": _per_octave(pe - pe_ref, args.channels, args.freqs),
        "torch IPE (cpu)": _per_octave(ipe_torch - ipe_ref, args.channels, args.freqs),
    }
    print(f"max |error| / 2^-52 per octave k; {args.points}x{args.channels} coordinates, "
          "mean ~ 3 N(0,1), var log-uniform in [1e-12, 1]")
    print(f"{'k':>3} " + " ".join(f"{name:>18}" for name in rows))
    for k in range(args.freqs):
        print(f"{k:>3} " + " ".join(f"{vals[k]:>18.3g}" for vals in rows.values()))
    print("max " + " ".join(f"{max(vals):>18.3g}" for vals in rows.values()))


if __name__ == "__main__":
    main()
