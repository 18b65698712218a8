"""The report's figures (matplotlib, PNG): training curves, PSNR per scene, PSNR against the
legacy figure, and the original's figures (nerfpipe.figures_repro) for ablations and proposal
distillation. Every function writes one PNG atomically; paths come from nerfpipe.reporting.files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nerfpipe import figures_repro as repro
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import write_bytes
from nerfpipe.reporting import files
from nerfpipe.reporting.collect import WeightProfiles
from nerfpipe.reporting.files import STRIP_VIEW
from nerfpipe.reporting.manifest import Manifest
from nerfpipe.reporting.tables import MEAN_ROW

MAX_WIDTH_IN = 18.0  # widest figure, in inches (at 100 dpi), however many bars


def variant_colours(variants: list[str]) -> dict[str, Any]:
    """One colour per variant: tab10 up to 10 variants, tab20 up to 20, then a continuous map."""
    from matplotlib import colormaps

    n = len(variants)
    if n <= 20:
        cmap = colormaps["tab10" if n <= 10 else "tab20"]
        return {v: cmap(i) for i, v in enumerate(variants)}
    cmap = colormaps["turbo"]
    return {v: cmap(i / (n - 1)) for i, v in enumerate(variants)}


def save_figure(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    write_bytes(path, buf.getvalue())


def plot_training_curves(logs: pd.DataFrame, variants: list[str], scene: str, path: Path) -> None:
    """Loss and training PSNR against iteration and wall time, one colour per variant.

    logs: the train logs of this scene, long form (collect.train_logs); every seed is drawn.
    """
    from matplotlib.figure import Figure

    colours = variant_colours(variants)
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for (variant, _seed), log in logs.groupby(["variant", "seed"], sort=False):
        for r, (ycol, ylabel) in enumerate((("loss", "training loss"), ("psnr", "training PSNR (dB)"))):
            for c, (xcol, xlabel) in enumerate((("iteration", "iteration"), ("elapsed_s", "wall time (s)"))):
                ax = axes[r, c]
                ax.plot(log[xcol], log[ycol], color=colours[variant], lw=1.2, alpha=0.8)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
    if (logs["loss"] > 0).all():
        for ax in axes[0]:
            ax.set_yscale("log")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    handles = [axes[0, 0].plot([], [], color=colours[v], label=v)[0] for v in variants]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(variants), 6), frameon=False)
    fig.suptitle(f"Training curves — {scene}")
    save_figure(fig, path)


def plot_psnr_bars(agg: pd.DataFrame, scenes: list[str], variants: list[str], path: Path) -> None:
    """Grouped bars of test PSNR per scene (one bar per variant), ± std over seeds."""
    from matplotlib.figure import Figure

    colours = variant_colours(variants)
    width_in = min(MAX_WIDTH_IN, max(6.0, 1.2 * len(scenes) * len(variants) + 2))
    fig = Figure(figsize=(width_in, 4.5))
    ax = fig.subplots()
    width = 0.8 / len(variants)
    x = np.arange(len(scenes))
    for i, variant in enumerate(variants):
        sub = agg[(agg["variant"] == variant) & (agg["scene"] != MEAN_ROW)].set_index("scene").loc[scenes]
        err = sub["psnr_std"].to_numpy()
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width,
            sub["psnr"],
            width,
            label=variant,
            color=colours[variant],
            yerr=None if np.isnan(err).all() else np.nan_to_num(err),
            capsize=3 if len(variants) <= 10 else 1,
        )
    ax.set_xticks(x, scenes)
    ax.set_ylabel("test PSNR (dB, MSE-based)")
    low = float(agg["psnr"].min())
    ax.set_ylim(max(0.0, low - 5.0), None)
    ax.legend(frameon=False, ncol=min(len(variants), 6))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("Test PSNR per scene")
    save_figure(fig, path)


def plot_legacy_scatter(df: pd.DataFrame, variants: list[str], path: Path) -> None:
    """Every run's PSNR against its legacy PSNR-SoftL1, with the y = x line."""
    from matplotlib.figure import Figure

    colours = variant_colours(variants)
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    for variant in variants:
        sub = df[df["variant"] == variant]
        ax.scatter(sub["psnr_softl1"], sub["psnr"], color=colours[variant], label=variant, s=30)
    lo = float(min(df["psnr"].min(), df["psnr_softl1"].min())) - 1.0
    hi = float(max(df["psnr"].max(), df["psnr_softl1"].max())) + 1.0
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("PSNR-SoftL1, legacy (dB)")
    ax.set_ylabel("PSNR, MSE-based (dB)")
    ax.set_title(f"Legacy gap: mean {float(df['psnr_gap'].mean()):.2f} dB")
    ax.legend(frameon=False, fontsize=8 if len(variants) > 10 else None)
    ax.grid(True, alpha=0.3)
    save_figure(fig, path)


def write_plots(m: Manifest, df: pd.DataFrame, agg: pd.DataFrame, logs: dict[str, pd.DataFrame],
                out_dir: Path) -> list[tuple[str, str]]:
    """The section "Plots": training curves per scene (`logs`: scene -> collect.train_logs),
    PSNR per scene and PSNR against the legacy figure. Returns [(title, path), ...]."""
    plots = []
    for scene in m.scenes:
        rel = files.training_curves(scene)
        plot_training_curves(logs[scene], m.variants, scene, out_dir / rel)
        plots.append((f"Training curves — {scene}", rel))
    plot_psnr_bars(agg, m.scenes, m.variants, out_dir / files.PSNR_BARS)
    plots.append(("Test PSNR per scene and variant", files.PSNR_BARS))
    plot_legacy_scatter(df, m.variants, out_dir / files.LEGACY_SCATTER)
    plots.append(("PSNR against the legacy PSNR-SoftL1, every run", files.LEGACY_SCATTER))
    return plots


def write_ablation_figures(m: Manifest, ablations: pd.DataFrame, profiles: WeightProfiles,
                           out_dir: Path) -> None:
    """For each row of tables.ablation_table: the renders and depth maps of STRIP_VIEW and the
    NeRF weights along rays, base against ablation, of the first seed (mip-NeRF 360, Figure 5)."""
    seed = m.seeds[0]
    for _, row in ablations.iterrows():
        scene, ablation, base = row["scene"], row["ablation"], row["base"]
        views = {v: repro.read_view(m.files(scene, v, seed)["renders"], STRIP_VIEW) for v in (base, ablation)}
        save_figure(
            repro.figure_ablation_views(views, f"{scene}, test view {STRIP_VIEW} (seed {seed})"),
            out_dir / row["views"],
        )
        title = (f"{scene}: NeRF-level weights along rays of test view {STRIP_VIEW}, {ablation} vs {base} "
                 f"(seed {seed})")
        figure = repro.figure_ablation_weights(
            profiles(scene, base, seed), profiles(scene, ablation, seed), base, ablation, title
        )
        save_figure(figure, out_dir / row["weights"])


def write_distillation_figures(m: Manifest, df: pd.DataFrame, profiles: WeightProfiles,
                               out_dir: Path) -> list[tuple[str, str, int, str]]:
    """Proposal against NeRF weight densities (mip-NeRF 360, Figure 4) of the first seed of every
    proposal-based variant (figures_repro.PROPOSAL_METHODS) in every scene.
    Returns [(scene, variant, seed, path), ...]."""
    seed = m.seeds[0]
    methods = df.drop_duplicates("variant").set_index("variant")["method"]
    out = []
    for scene in m.scenes:
        for variant in m.variants:
            if methods[variant] not in repro.PROPOSAL_METHODS:
                continue
            prof = profiles(scene, variant, seed)
            if prof["method"] != methods[variant]:
                raise NerfpipeError(f"{profiles.path(scene, variant, seed)}: method is {prof['method']!r}, "
                                    f"summary.json says {methods[variant]!r}")
            rel = files.distillation(scene, variant, seed)
            title = (f"{scene}, {variant} (seed {seed}): proposal vs NeRF weight densities, "
                     f"test view {STRIP_VIEW}")
            save_figure(repro.figure_distillation(prof, title), out_dir / rel)
            out.append((scene, variant, seed, rel))
    return out
