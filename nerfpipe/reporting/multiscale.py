"""The report's multiscale section (mip-NeRF sec. 5, Table 1): PSNR and SSIM at full, 1/2, 1/4 and 1/8
resolution and their average, per scene and variant (mean over seeds) plus the mean over scenes.

Only runs of a multiscale scene have the per-scale columns (`psnr_s{f}`, `ssim_s{f}`, from metrics.json
through `collect`); without them the section is absent, so single-scale reports do not change.
"""

from __future__ import annotations

import math

import pandas as pd

SCALES = (1, 2, 4, 8)
METRICS = (("psnr", "PSNR", 2), ("ssim", "SSIM", 4))
MEAN_ROW = "mean"
TITLE = "Multiscale (mip-NeRF sec. 5)"
INTRO = (
    "mip-NeRF's multiscale protocol: every view trained and tested at full, 1/2, 1/4 and 1/8 resolution "
    "(area-averaged images, each pixel's loss weighted by its area). Cells are the mean over test images "
    "of one scale, averaged over seeds; avg is the mean over the four scales (the run's headline PSNR / "
    "SSIM), not the paper's \"Avg.\" (a geometric mean of MSE, sqrt(1 - SSIM) and LPIPS). The coarse "
    "images average premultiplied colour (alpha-correct); the paper's conversion script averaged straight "
    "RGBA, so at alpha edges their ground truth differs and the per-scale figures are not strictly "
    "comparable with its Table 1. The mean rows average over scenes."
)


def scale_label(f: int) -> str:
    return "1x" if f == 1 else f"1/{f}"


def columns() -> list[tuple[str, str, int]]:
    """(runs column, heading, decimals) of the table, per-scale columns then the average, per metric."""
    out = []
    for key, label, n in METRICS:
        out += [(f"{key}_s{f}", f"{label} {scale_label(f)}", n) for f in SCALES]
        out.append((key, f"{label} avg", n))
    return out


def multiscale_table(runs: pd.DataFrame, scenes: list[str], variants: list[str]) -> pd.DataFrame | None:
    """One row per (scene, variant) of the runs with per-scale metrics, mean over seeds, then a
    MEAN_ROW row per variant (mean over its scenes); columns scene, variant and `columns()`' keys.
    None when no run has per-scale metrics."""
    keys = [k for k, _, _ in columns()]
    if not all(k in runs.columns for k in keys):
        return None
    ms = runs[runs["psnr_s1"].notna()]
    if ms.empty:
        return None
    rows = []
    for scene in scenes:
        for variant in variants:
            sub = ms[(ms["scene"] == scene) & (ms["variant"] == variant)]
            if len(sub):
                rows.append({"scene": scene, "variant": variant, **sub[keys].mean().to_dict()})
    per_scene = pd.DataFrame(rows)
    means = per_scene.groupby("variant", sort=False)[keys].mean().reset_index()
    means.insert(0, "scene", MEAN_ROW)
    return pd.concat([per_scene, means], ignore_index=True)


def fmt(value: float, n: int) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{n}f}"


def markdown_lines(runs: pd.DataFrame, scenes: list[str], variants: list[str]) -> list[str]:
    """The section as markdown lines (none without per-scale metrics)."""
    table = multiscale_table(runs, scenes, variants)
    if table is None:
        return []
    cols = columns()
    lines = [f"## {TITLE}", "", INTRO, "",
             "| Scene | Variant | " + " | ".join(h for _, h, _ in cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    for _, row in table.iterrows():
        cells = " | ".join(fmt(row[k], n) for k, _, n in cols)
        lines.append(f"| {row['scene']} | {row['variant']} | {cells} |")
    return [*lines, ""]


def html_values(runs: pd.DataFrame, scenes: list[str], variants: list[str]) -> dict | None:
    """What report.html.j2 shows of the section: {"title", "intro", "heads", "rows": [{"scene",
    "variant", "numbers": [(text, sort key)]}]}; None without per-scale metrics."""
    table = multiscale_table(runs, scenes, variants)
    if table is None:
        return None
    cols = columns()
    rows = [{"scene": row["scene"], "variant": row["variant"],
             "numbers": [(fmt(row[k], n), "" if math.isnan(row[k]) else repr(float(row[k])))
                         for k, _, n in cols]}
            for _, row in table.iterrows()]
    return {"title": TITLE, "intro": INTRO, "heads": [h for _, h, _ in cols], "rows": rows}
