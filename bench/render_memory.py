"""Peak memory of rendering one view in chunks: the chunk, not the image, bounds it.

    python bench/render_memory.py [--resolution 800] [--chunks 4096,1024,16384] [--threads N]
                                  [--no-normals] [--fp32] [--max-chunks K]

Renders one RES x RES view of the Blender camera with the NeRF paper's model (8x256 coarse and
fine MLPs, 64 coarse + 128 fine samples per ray; random weights, which cost the same as trained
ones) through `nerfpipe.inference.render_rays`, once per chunk size, each in a fresh interpreter
so that `ru_maxrss` is that render's peak alone. Prints a table (peak RSS, the RSS before
rendering, the render time) and ends with one line holding a JSON object of the figures,
e.g. {"bench": "render_memory", "peak_rss_mb_chunk4096": 1234.5, ...}.

Density normals are rendered as the evaluation stage does by default (`render_normal: true`);
their autograd pass keeps the fine MLP's activations of the whole chunk, about 1.5 MB per ray
for this model, so a 16384-ray chunk with normals needs about 24 GB. `--no-normals` measures
the colour-only render. The model runs as evaluation runs it: under bf16 autocast on CPU when
`amp` is on (the schema's default); `--fp32` turns it off.

Every chunk of a view costs the same, so `--max-chunks K` renders only the first K chunks (the
peak is reached in the first) and extrapolates the time of the whole view ("view s"). The
view's rays are built either way; its outputs (about 40 MB at 800x800) are then not.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

GOAL_MB = 2048.0  # peak RSS a full-resolution render must stay under
DEFAULT_CHUNKS = (4096, 1024, 16384)
CAMERA_ANGLE_X = 0.6911112  # NeRF-synthetic's field of view (radians)
CAMERA_RADIUS = 4.0
NEAR, FAR = 2.0, 6.0
MODEL = {"method": "nerf", "net_depth": 8, "net_width": 256, "net_depth_fine": 8, "net_width_fine": 256,
         "n_samples": 64, "n_importance": 128}


def peak_rss_mb() -> float:
    """This process's peak resident set size (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / 1024.0
    return float("nan")


def measure(resolution: int, chunk: int, threads: int | None, normals: bool, max_chunks: int | None,
            fp32: bool) -> dict:
    """Render one view in this process; return its figures (run in a fresh interpreter)."""
    import torch

    from nerfpipe.cameras import focal_from_fov
    from nerfpipe.inference import render_rays, view_rays
    from nerfpipe.models import build_model
    from nerfpipe.settings import check_train_settings

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    settings = {**MODEL, "eval_chunk": chunk, "render_normal": normals}
    settings = check_train_settings({**settings, "amp": False} if fp32 else settings)
    model = build_model(settings).eval()
    c2w = torch.eye(4)
    c2w[2, 3] = CAMERA_RADIUS  # on the +z axis, looking down -z at the origin
    focal = focal_from_fov(resolution, CAMERA_ANGLE_X)
    rays = view_rays(resolution, resolution, focal, c2w, NEAR, FAR)
    n_view = len(rays)
    if max_chunks is not None:
        rays = rays.slice(0, max_chunks * chunk)
    before = current_rss_mb()
    start = time.perf_counter()
    out = render_rays(model, rays, torch.ones(3), chunk)
    seconds = time.perf_counter() - start
    assert out["rgb"].shape == (len(rays), 3) and bool(torch.isfinite(out["rgb"]).all())
    assert ("normals" in out) == normals
    rays_per_s = len(rays) / seconds
    return {"chunk": chunk, "resolution": resolution, "threads": torch.get_num_threads(), "normals": normals,
            "amp": bool(settings["amp"]), "rays_rendered": len(rays), "rss_before_mb": round(before, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "seconds": round(seconds, 2), "view_seconds": round(n_view / rays_per_s, 1),
            "rays_per_s": round(rays_per_s, 1), "n_params": sum(p.numel() for p in model.parameters())}


def run_child(resolution: int, chunk: int, threads: int | None, normals: bool,
              max_chunks: int | None, fp32: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", "--resolution", str(resolution), "--chunks", str(chunk)]
    if threads:
        cmd += ["--threads", str(threads)]
    if not normals:
        cmd.append("--no-normals")
    if fp32:
        cmd.append("--fp32")
    if max_chunks is not None:
        cmd += ["--max-chunks", str(max_chunks)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"render with chunk {chunk} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=800, help="image side in pixels")
    parser.add_argument("--chunks", default=",".join(map(str, DEFAULT_CHUNKS)),
                        help="comma-separated rays per forward pass, one fresh process each")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-normals", action="store_true", help="colour only (render_normal: false)")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast (amp: false)")
    parser.add_argument("--max-chunks", type=int, help="render only the first K chunks of the view")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chunks = [int(c) for c in args.chunks.split(",") if c]
    if args.child:
        print(json.dumps(measure(args.resolution, chunks[0], args.threads, not args.no_normals,
                                 args.max_chunks, args.fp32)))
        return

    normals = not args.no_normals
    results = [run_child(args.resolution, c, args.threads, normals, args.max_chunks, args.fp32)
               for c in chunks]
    print(f"render of one {args.resolution}x{args.resolution} view, NeRF 8x256 coarse + fine, "
          f"64 + 128 samples/ray, normals {'on' if normals else 'off'}, "
          f"{'bf16 autocast' if results[0]['amp'] else 'fp32'}, {results[0]['threads']} threads")
    print(f"{'chunk':>7} {'rays':>8} {'rss before MB':>14} {'peak RSS MB':>12} {'render s':>9} {'view s':>8} "
          f"{'rays/s':>8}")
    for r in results:
        print(f"{r['chunk']:>7} {r['rays_rendered']:>8} {r['rss_before_mb']:>14.1f} "
              f"{r['peak_rss_mb']:>12.1f} "
              f"{r['seconds']:>9.1f} {r['view_seconds']:>8.0f} {r['rays_per_s']:>8.0f}")
    figures: dict = {"bench": "render_memory", "resolution": args.resolution,
                     "threads": results[0]["threads"],
                     "normals": normals, "amp": results[0]["amp"], "max_chunks": args.max_chunks,
                     "goal_mb": GOAL_MB}
    for r in results:
        figures[f"peak_rss_mb_chunk{r['chunk']}"] = r["peak_rss_mb"]
        figures[f"render_s_chunk{r['chunk']}"] = r["seconds"]
        figures[f"view_s_chunk{r['chunk']}"] = r["view_seconds"]
    # Growth of the peak per extra ray in a chunk: the chunk-proportional part of the bound.
    if len(results) >= 2:
        lo, hi = min(results, key=lambda r: r["chunk"]), max(results, key=lambda r: r["chunk"])
        if hi["chunk"] > lo["chunk"]:
            figures["peak_kb_per_chunk_ray"] = round(
                1024 * (hi["peak_rss_mb"] - lo["peak_rss_mb"]) / (hi["chunk"] - lo["chunk"]), 2)
    figures["under_goal"] = all(r["peak_rss_mb"] < GOAL_MB for r in results)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
