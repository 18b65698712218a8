"""The original implementation's own figures, rebuilt from the evaluation artifacts.

Two figures of the mip-NeRF 360 paper are reproduced for the report:

- the distortion-regulariser ablation (Figure 5 of mip-NeRF 360, renders and depth maps with
  and without L_dist, Equations 14-15): the same model trained with and without the
  regulariser, its renders and depth maps side by side and
  the NeRF level's weights along a few rays; the regularised weights should sit closer to a
  delta at the surface, which `weight_spread` turns into one number per ray;
- proposal-network distillation (Figure 4 of mip-NeRF 360): the proposal network's histogram
  over its coarse intervals against the NeRF's histogram over its finer intervals. As in the
  paper both are drawn as densities w_i / (t_{i+1} - t_i) so they share one axis; the
  interlevel loss (Equations 12-13) makes the proposal mass overlapping a NeRF interval bound
  the NeRF weight of that interval.

Inputs are the `weights.json` files of `nerfpipe.diagnostics`: per ray, every level's interval
endpoints `t` [N+1] (sorted) and weights `w` [N] (summing to at most 1), proposal levels first
and the NeRF level last. Functions here read and reduce that data and build matplotlib
figures; the report (nerfpipe.reporting.figures) saves them and shows them in report.md and report.html.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nerfpipe.errors import NerfpipeError
from nerfpipe.io import read_json

# Methods whose first levels are proposal networks (mip-NeRF 360 sampling).
PROPOSAL_METHODS = ("mipnerf360", "refnerf")
# A ray whose NeRF weights sum below this hit nothing: its spread is undefined, not 0.
MASS_EPS = 1e-6
# Settings saved with every run that identify it rather than configure it.
IDENTITY_KEYS = ("variant", "seed", "scene", "dataset_name")


# ---------------------------------------------------------------------------- data


def read_weight_profiles(path: str | Path, variant: str | None = None) -> dict[str, Any]:
    """Read and check a weights.json: every ray has "pixel", "acc" and levels with len(t) == len(w) + 1.

    `variant`, when given, must match the file's "variant". Errors name the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise NerfpipeError(f"{path}: file not found (needed by the report; written by evaluation)")
    data = read_json(path)
    if not isinstance(data, dict):
        raise NerfpipeError(f"{path}: expected a JSON object")
    for key in ("method", "variant", "rays"):
        if key not in data:
            raise NerfpipeError(f"{path}: missing key {key}")
    if variant is not None and data["variant"] != variant:
        raise NerfpipeError(f"{path}: variant is {data['variant']!r}, expected {variant!r} from its folder")
    if not isinstance(data["rays"], list) or not data["rays"]:
        raise NerfpipeError(f"{path}: rays: expected a non-empty list")
    for i, ray in enumerate(data["rays"]):
        where = f"{path}: rays[{i}]"
        for key in ("pixel", "acc", "levels"):
            if key not in ray:
                raise NerfpipeError(f"{where}: missing key {key}")
        if not isinstance(ray["levels"], list) or not ray["levels"]:
            raise NerfpipeError(f"{where}.levels: expected a non-empty list")
        for j, level in enumerate(ray["levels"]):
            for key in ("name", "t", "w"):
                if key not in level:
                    raise NerfpipeError(f"{where}.levels[{j}]: missing key {key}")
            t, w = np.asarray(level["t"], float), np.asarray(level["w"], float)
            if t.ndim != 1 or w.ndim != 1 or t.size != w.size + 1 or w.size == 0:
                raise NerfpipeError(
                    f"{where}.levels[{j}]: expected t of length len(w) + 1, got {t.size} and {w.size}"
                )
            if not (np.all(np.isfinite(t)) and np.all(np.isfinite(w))) or np.any(np.diff(t) < 0):
                raise NerfpipeError(f"{where}.levels[{j}]: t must be sorted and t, w finite")
    return data


def nerf_level(ray: dict[str, Any]) -> dict[str, Any]:
    """The level that renders the image: the last one (NeRF after the proposals, fine after coarse)."""
    return ray["levels"][-1]


def proposal_levels(ray: dict[str, Any]) -> list[dict[str, Any]]:
    """Every level before the last (the proposal levels of a mip-NeRF 360 style model)."""
    return ray["levels"][:-1]


def interval_density(t: Any, w: Any) -> np.ndarray:
    """Histogram heights w_i / (t_{i+1} - t_i), so histograms over different intervals share an axis.

    t: [N+1] sorted endpoints, w: [N] weights -> [N]. An empty interval (t_{i+1} = t_i) gets
    density 0: volume rendering gives it alpha = 1 - exp(-sigma * 0) = 0, hence no weight, so
    density x length still sums back to the weights.
    """
    t, w = np.asarray(t, float), np.asarray(w, float)
    length = np.diff(t)
    return np.divide(w, length, out=np.zeros_like(w), where=length > 0)


def weight_spread(t: Any, w: Any) -> float:
    """Weight-weighted spread of the interval midpoints: sqrt(sum w (m - mean)^2 / sum w).

    t: [N+1] sorted endpoints, w: [N] weights. 0 for all weight in one interval (a delta at the
    resolution of the intervals); NaN when the weights sum to less than MASS_EPS (no surface).
    The distortion loss of mip-NeRF 360 (Equations 14-15) pushes this towards 0.
    """
    t, w = np.asarray(t, float), np.asarray(w, float)
    mass = float(w.sum())
    if mass < MASS_EPS:
        return math.nan
    mid = 0.5 * (t[1:] + t[:-1])
    mean = float((w * mid).sum()) / mass
    # Clamp: rounding can make a zero variance slightly negative.
    return math.sqrt(max(float((w * (mid - mean) ** 2).sum()) / mass, 0.0))


def concentration(profiles: dict[str, Any]) -> float:
    """Mean over rays of `weight_spread` of the NeRF level (smaller = closer to a delta).

    Rays without a surface (NaN spread) are left out; NaN when no ray has one.
    """
    spreads = [weight_spread(nerf_level(r)["t"], nerf_level(r)["w"]) for r in profiles["rays"]]
    kept = [s for s in spreads if not math.isnan(s)]
    return float(np.mean(kept)) if kept else math.nan


def settings_diff(base: dict[str, Any], ablation: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Resolved settings (config.json of two runs) that differ: key -> (base value, ablation value).

    The keys that name a run (variant, seed, ...) are ignored; a key missing on one side counts
    as a difference with value None.
    """
    keys = sorted((set(base) | set(ablation)) - set(IDENTITY_KEYS))
    return {k: (base.get(k), ablation.get(k)) for k in keys if base.get(k) != ablation.get(k)}


def ablation_metric_diffs(
    df: pd.DataFrame,
    scenes: list[str],
    ablations: dict[str, str],
    metrics: tuple[str, ...] = ("psnr", "ssim"),
) -> pd.DataFrame:
    """Per scene and ablation pair: mean over matched seeds of (ablation - base) for each metric.

    df: one row per run with columns scene, variant, seed and the metrics (`report.collect`).
    Columns: scene, ablation, base, n_pairs, d_<metric> for each metric.
    """
    rows = []
    for scene in scenes:
        sub = df[df["scene"] == scene]
        for ablation, base in ablations.items():
            a = sub[sub["variant"] == ablation].set_index("seed")
            b = sub[sub["variant"] == base].set_index("seed")
            seeds = sorted(set(a.index) & set(b.index))
            row: dict[str, Any] = {"scene": scene, "ablation": ablation, "base": base, "n_pairs": len(seeds)}
            for m in metrics:
                diff = a.loc[seeds, m].astype(float) - b.loc[seeds, m].astype(float)
                row[f"d_{m}"] = float(diff.mean()) if seeds else math.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=["scene", "ablation", "base", "n_pairs", *(f"d_{m}" for m in metrics)])


def read_view(renders: Path, view: int) -> dict[str, np.ndarray | None]:
    """The rgb (required) and depth (None when not rendered) PNGs of one evaluation view."""
    import imageio.v3 as iio

    rgb = renders / f"{view:03d}_rgb.png"
    if not rgb.is_file():
        raise NerfpipeError(f"{rgb}: file not found (needed by the report)")
    depth = renders / f"{view:03d}_depth.png"
    return {"rgb": iio.imread(rgb), "depth": iio.imread(depth) if depth.is_file() else None}


# ---------------------------------------------------------------------------- figures


def figure_ablation_views(views: dict[str, dict[str, np.ndarray | None]], title: str) -> Any:
    """One row per variant: its render and its depth map (from `read_view`), pixels kept sharp."""
    from matplotlib.figure import Figure

    n_cols = 2 if any(v["depth"] is not None for v in views.values()) else 1
    fig = Figure(figsize=(2.6 * n_cols + 0.4, 2.6 * len(views) + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(len(views), n_cols, squeeze=False))
    for row, (variant, images) in enumerate(views.items()):
        for col, kind in enumerate(("rgb", "depth")[:n_cols]):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if images[kind] is None:
                ax.text(0.5, 0.5, "not rendered", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.imshow(images[kind], interpolation="nearest")
            ax.set_title(f"{variant}: {'render' if kind == 'rgb' else 'depth'}", fontsize=9)
    fig.suptitle(title)
    return fig


def _ray_grid(n_rays: int, title: str) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    n_cols = min(n_rays, 2)
    n_rows = math.ceil(n_rays / n_cols)
    fig = Figure(figsize=(5.2 * n_cols, 3.4 * n_rows + 0.6), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False)).reshape(-1)
    for ax in axes[n_rays:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes[:n_rays]


def figure_ablation_weights(
    base: dict[str, Any], ablation: dict[str, Any], base_name: str, ablation_name: str, title: str
) -> Any:
    """The NeRF level's weights as step functions over t, both variants on one axes per ray.

    Rays are paired by their order in the two files (evaluation picks the same pixels from the
    test view's ground-truth opacity for every variant); each legend entry carries the ray's
    `weight_spread`.
    """
    n = min(len(base["rays"]), len(ablation["rays"]))
    fig, axes = _ray_grid(n, title)
    for ax, rb, ra in zip(axes, base["rays"][:n], ablation["rays"][:n], strict=True):
        for ray, name, colour in ((rb, base_name, "C0"), (ra, ablation_name, "C3")):
            lv = nerf_level(ray)
            spread = weight_spread(lv["t"], lv["w"])
            ax.stairs(lv["w"], lv["t"], color=colour, lw=1.5, label=f"{name} (spread {spread:.3g})")
        pixels = {tuple(rb["pixel"]), tuple(ra["pixel"])}
        ax.set_title("pixel " + " / ".join(f"({y}, {x})" for y, x in sorted(pixels)), fontsize=9)
        ax.set_xlabel("t (distance along the ray)")
        ax.set_ylabel("weight w_i of interval [t_i, t_i+1]")
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    return fig


def figure_distillation(profiles: dict[str, Any], title: str) -> Any:
    """Proposal histograms and the NeRF histogram as densities over t, one axes per ray.

    Heights are weight / interval length (`interval_density`), so the proposal's few wide bins
    and the NeRF's many narrow ones are comparable; once the interlevel loss has converged the
    proposal mass overlapping each NeRF interval bounds that interval's weight, so the
    proposal histogram forms an envelope around the NeRF's (Figure 4 of mip-NeRF 360).
    """
    rays = profiles["rays"]
    fig, axes = _ray_grid(len(rays), title)
    for ax, ray in zip(axes, rays, strict=True):
        for k, lv in enumerate(proposal_levels(ray)):
            ax.stairs(
                interval_density(lv["t"], lv["w"]),
                lv["t"],
                fill=True,
                alpha=0.35,
                color=f"C{1 + k}",
                label=f"{lv['name']} ({len(lv['w'])} intervals, mass {sum(lv['w']):.3f})",
            )
        lv = nerf_level(ray)
        ax.stairs(
            interval_density(lv["t"], lv["w"]),
            lv["t"],
            color="C0",
            lw=1.5,
            label=f"NeRF ({len(lv['w'])} intervals, mass {sum(lv['w']):.3f})",
        )
        y, x = ray["pixel"]
        ax.set_title(f"pixel ({y}, {x}), opacity {ray['acc']:.3f}", fontsize=9)
        ax.set_xlabel("t (distance along the ray)")
        ax.set_ylabel("density = weight / interval length")
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    return fig
