"""The report's efficiency section: mip-NeRF 360's claim that proposal-network distillation keeps
quality at fewer MLP evaluations, shown as test PSNR against MLP evaluations per ray and against
training wall time, one marker per variant, and a small table of the measured quantities.

Every number is a mean over scenes of per-scene means over seeds (so a scene with more seeds does
not weigh more); the spread is the std over seeds of the scene-averaged value, as in the mean rows
of the results table (tables.aggregate). The section is left out when fewer than two variants
have `samples_per_ray` measured: one marker compares nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nerfpipe.reporting import files
from nerfpipe.reporting.figures import save_figure, variant_colours

FIGURE = f"{files.FIGURES}/efficiency.png"
MIN_VARIANTS = 2
# The table's columns, in order: (collect column, heading).
COLUMNS = (
    ("samples_per_ray", "MLP evals/ray"),
    ("train_seconds", "Train time (s)"),
    ("rays_per_second", "Rays/s"),
    ("psnr", "PSNR (dB)"),
)
XAXES = (  # the figure's panels: (collect column, x label, x scale)
    ("samples_per_ray", "MLP evaluations per ray (log scale)", "log"),
    ("train_seconds", "training wall time (s)", "linear"),
)
YLABEL = "test PSNR (dB, MSE-based)"


@dataclass(frozen=True)
class Series:
    """What one panel of the figure plots: one point per variant, in table order."""

    xlabel: str
    ylabel: str
    xscale: str
    variants: list[str]
    x: list[float]
    y: list[float]
    yerr: list[float]  # NaN: no error bar (a single seed)


@dataclass(frozen=True)
class Efficiency:
    """The section's content: `table` (efficiency_table), the figure's path relative to the
    report folder and the series it was drawn from."""

    table: pd.DataFrame
    figure: str
    series: list[Series]


def _measured(values: pd.Series) -> bool:
    """Every run has a finite, positive value (a variant with gaps would average unlike runs)."""
    return len(values) > 0 and bool(((values > 0) & values.map(math.isfinite)).all())


def efficiency_table(runs: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Per variant whose runs all have samples_per_ray and psnr measured: each of COLUMNS as the
    mean over scenes of the per-scene mean over seeds (`<key>`), and the std over seeds of the
    per-seed mean over scenes (`<key>_std`, NaN with one seed); plus method, n_scenes, n_seeds and
    samples_fixed (every run has the same samples_per_ray: a fixed count, not a measured mean).
    Variants in `variants` order."""
    keys = [key for key, _ in COLUMNS]
    rows = []
    for variant in variants:
        sub = runs[runs["variant"] == variant]
        values = sub[keys].apply(pd.to_numeric, errors="coerce").astype(float)
        if not (_measured(values["samples_per_ray"]) and _measured(values["psnr"])):
            continue
        row: dict[str, Any] = {"variant": variant, "method": sub["method"].iloc[0],
                               "n_scenes": int(sub["scene"].nunique()), "n_seeds": int(sub["seed"].nunique()),
                               "samples_fixed": bool(values["samples_per_ray"].nunique() == 1)}
        for key in keys:
            row[key] = float(values[key].groupby(sub["scene"]).mean().mean())
            per_seed = values[key].groupby(sub["seed"]).mean()
            row[f"{key}_std"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan
        rows.append(row)
    columns = ["variant", "method", "n_scenes", "n_seeds", "samples_fixed",
               *(k + s for k in keys for s in ("", "_std"))]
    return pd.DataFrame(rows, columns=columns)


def plot_series(table: pd.DataFrame) -> list[Series]:
    """The two panels' points (XAXES), straight from `table`."""
    variants = table["variant"].tolist()
    return [
        Series(xlabel=xlabel, ylabel=YLABEL, xscale=xscale, variants=variants,
               x=table[key].astype(float).tolist(), y=table["psnr"].astype(float).tolist(),
               yerr=table["psnr_std"].astype(float).tolist())
        for key, xlabel, xscale in XAXES
    ]


def plot_efficiency(series: list[Series], colours: dict[str, Any], path: Path) -> Any:
    """Draw `series` (one panel each, one labelled marker per variant with ± std error bars) into a
    PNG at `path`; returns the matplotlib Figure (for tests to read the axes back)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, len(series))
    for ax, s in zip(axes, series, strict=True):
        for variant, x, y, err in zip(s.variants, s.x, s.y, s.yerr, strict=True):
            ax.errorbar([x], [y], yerr=None if math.isnan(err) else [err], fmt="o", ms=7, capsize=3,
                        color=colours[variant], label=variant)
            ax.annotate(variant, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=8)
        ax.set_xscale(s.xscale)
        ax.set_xlabel(s.xlabel)
        ax.set_ylabel(s.ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.15, y=0.15)  # room for the labels beside the outermost markers
    fig.suptitle("Test PSNR against cost (mean over scenes; error bars: std over seeds)")
    save_figure(fig, path)
    return fig


def write_efficiency(runs: pd.DataFrame, variants: list[str], out_dir: Path) -> Efficiency | None:
    """The section's table and figure (written to out_dir / FIGURE); None, and nothing written,
    when fewer than MIN_VARIANTS variants have samples_per_ray measured."""
    table = efficiency_table(runs, variants)
    if len(table) < MIN_VARIANTS:
        return None
    series = plot_series(table)
    plot_efficiency(series, variant_colours(variants), out_dir / FIGURE)
    return Efficiency(table=table, figure=FIGURE, series=series)


def _fmt(key: str, value: float, whole: bool = False) -> str:
    if key == "samples_per_ray":
        return f"{value:,.0f}" if whole else f"{value:,.1f}"
    if key == "rays_per_second":
        return f"{value:,.0f}"
    return f"{value:.1f}" if key == "train_seconds" else f"{value:.2f}"


def cells(row: pd.Series, show_std: bool) -> list[tuple[str, float]]:
    """One table row's cells as (text, full-precision value), in COLUMNS order: `n/a` when missing,
    `± std` when `show_std`. A fixed MLP evals/ray count prints whole and without spread; a measured
    mean (occupancy grid) with a decimal, even when it happens to be whole."""
    out = []
    for key, _ in COLUMNS:
        value, std = float(row[key]), float(row[f"{key}_std"])
        if math.isnan(value):
            out.append(("n/a", value))
            continue
        fixed = key == "samples_per_ray" and bool(row["samples_fixed"])
        text = _fmt(key, value, whole=fixed and value.is_integer())
        if show_std and not math.isnan(std) and not fixed:
            text += f" ± {_fmt(key, std)}"
        out.append((text, value))
    return out
