"""The report's tables: aggregation over seeds, paired comparisons, the ablation table, the text
of their cells (shared by report.md and report.html) and the CSV files.

    report.csv        `aggregate`: one row per scene x variant plus a "mean" row per variant,
                      full precision, with best_<metric> flags
    runs.csv          `collect.collect`: one row per run
    paired.csv        `paired_table`: each variant against the baseline (nerfpipe.stats)
    ablations.csv     `ablation_table`: each ablation against its base per scene
    concentration.csv `collect.concentration`: the NeRF weight spread of every run of a pair
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nerfpipe import figures_repro as repro
from nerfpipe.io import write_text
from nerfpipe.layout import REPORT_FILES
from nerfpipe.reporting import files
from nerfpipe.reporting.collect import run_config
from nerfpipe.reporting.manifest import Manifest
from nerfpipe.stats import paired_comparison

MEAN_ROW = "mean"


@dataclass(frozen=True)
class Column:
    key: str  # column of `collect`'s frame
    label: str
    digits: int  # decimals in the tables
    better: str | None  # "higher", "lower" or None; metrics with a direction get best-marking


# Quality metrics marked best per scene; the rest are reported, not ranked.
COLUMNS: tuple[Column, ...] = (
    Column("psnr", "PSNR ↑", 2, "higher"),
    Column("psnr_softl1", "PSNR-SoftL1 (legacy)", 2, None),
    Column("psnr_gap", "PSNR − legacy", 2, None),
    Column("ssim", "SSIM ↑", 4, "higher"),
    Column("lpips", "LPIPS ↓", 4, "lower"),
    Column("normal_mae_deg", "Normal MAE (°) ↓", 2, "lower"),
    Column("train_seconds", "Train time", 0, None),
    Column("rays_per_second", "Rays/s", 0, None),
    Column("n_params", "Params", 0, None),
)
# Measured against ground-truth depth (nerfpipe.stages.evaluate, metrics.floater_fraction): shown only
# when some run has them, so reports of older results or of scenes without depth keep their columns.
# floater_fraction: the share of the rendering weight farther than floater_distance from the true
# surface (mip-NeRF 360 sec. 4); depth_mae: mean |rendered - true| z-depth over the foreground.
DEPTH_COLUMNS: tuple[Column, ...] = (
    Column("floater_fraction", "Floaters ↓", 3, "lower"),
    Column("depth_mae", "Depth MAE ↓", 3, "lower"),
)
ALL_COLUMNS = COLUMNS + DEPTH_COLUMNS
PAIRED_METRICS = ("psnr", "ssim", "lpips", "normal_mae_deg")
PAIRED_COLUMNS = (
    "variant",
    "baseline",
    "metric",
    "n",
    "mean_diff",
    "std_diff",
    "ci_low",
    "ci_high",
    "confidence",
    "p_value",
    "verdict",
)
ABLATION_EXTRA_COLUMNS = ("changes", "spread_base", "spread_ablation", "views", "weights")

# The per-run table of the documents: (collect column, heading).
RUN_DETAIL_COLUMNS = (
    ("scene", "Scene"),
    ("variant", "Variant"),
    ("seed", "Seed"),
    ("method", "Method"),
    ("iterations", "Iterations"),
    ("samples_per_ray", "MLP samples/ray"),
    ("train_backend", "Backend"),
    ("train_precision", "Precision"),
    ("skipped_steps", "Skipped steps"),
    ("final_loss", "Final loss"),
    ("psnr", "PSNR"),
    ("psnr_softl1", "PSNR-SoftL1"),
    ("n_images", "Test images"),
)


# ---------------------------------------------------------------------------- aggregation


def table_columns(frame: pd.DataFrame) -> tuple[Column, ...]:
    """The columns of the report table for `frame` (collect's runs or `aggregate`'s table): COLUMNS,
    then each of DEPTH_COLUMNS that some row of `frame` has a value of."""
    present = tuple(c for c in DEPTH_COLUMNS if c.key in frame.columns and frame[c.key].notna().any())
    return COLUMNS + present


def _depth_metrics(df: pd.DataFrame) -> tuple[str, ...]:
    return tuple(c.key for c in table_columns(df) if c in DEPTH_COLUMNS)


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def aggregate(df: pd.DataFrame, scenes: list[str], variants: list[str]) -> pd.DataFrame:
    """The report table: mean and std over seeds per scene x variant, then a mean row per variant.

    A mean row holds the mean over scenes (and seeds); its std is the spread over seeds of
    the per-seed scene average. A metric missing (NaN) in any run stays NaN in its cell.
    Adds best_<metric> flags for the ranked columns, computed within each scene (and
    among the mean rows). The columns are `table_columns(df)`.
    """
    rows = []
    columns = table_columns(df)
    keys = [c.key for c in columns]
    for scene in [*scenes, MEAN_ROW]:
        for variant in variants:
            sub = df[df["variant"] == variant]
            if scene != MEAN_ROW:
                sub = sub[sub["scene"] == scene]
            row: dict[str, Any] = {
                "scene": scene,
                "variant": variant,
                "method": sub["method"].iloc[0],
                "n_seeds": int(sub["seed"].nunique()),
            }
            for key in keys:
                values = pd.to_numeric(sub[key], errors="coerce").astype(float)
                row[key] = float(values.mean(skipna=False))
                per_seed = values.groupby(sub["seed"]).agg(lambda s: s.mean(skipna=False))
                row[f"{key}_std"] = _std(per_seed)
            rows.append(row)
    agg = pd.DataFrame(rows)
    for col in columns:
        if col.better is None:
            continue
        flag = np.zeros(len(agg), dtype=bool)
        for _, idx in agg.groupby("scene", sort=False).groups.items():
            values = agg.loc[idx, col.key]
            if values.notna().any():
                best = values.max() if col.better == "higher" else values.min()
                flag[np.asarray(idx)] = (values == best).to_numpy()
        agg[f"best_{col.key}"] = flag
    return agg


def paired_table(df: pd.DataFrame, variants: list[str], baseline: str) -> pd.DataFrame:
    """Paired comparison of every variant against `baseline` on the ranked metrics (PAIRED_METRICS, then
    the depth metrics that some run has)."""
    rows = []
    better = {c.key: c.better for c in ALL_COLUMNS}
    for variant in variants:
        if variant == baseline:
            continue
        for metric in (*PAIRED_METRICS, *_depth_metrics(df)):
            res = paired_comparison(df, metric, baseline, variant)
            if res["n"] == 0:
                continue  # the metric is missing for one side in every pair (e.g. no LPIPS)
            res.pop("pairs")
            res["verdict"] = verdict(res, better[metric])
            rows.append(res)
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def verdict(res: dict[str, Any], better: str | None) -> str:
    if res["n"] < 2 or math.isnan(res["ci_low"]):
        return "too few pairs"
    if res["ci_low"] > 0 or res["ci_high"] < 0:
        up = res["ci_low"] > 0
        return "better" if up == (better == "higher") else "worse"
    return "no significant difference"


def ablation_table(m: Manifest, df: pd.DataFrame, conc: pd.DataFrame) -> pd.DataFrame:
    """Per scene and ablation pair: metric differences ablation − base over matched seeds
    (figures_repro.ablation_metric_diffs), the settings that differ (config.json of the first
    seed), the mean spread of both (from `conc`, collect.concentration) and the names of the
    pair's figures (files.ablation_figures). Beside d_psnr and d_ssim, the differences of the depth
    metrics that some run has (d_floater_fraction: the distortion loss's effect on floaters)."""
    seed = m.seeds[0]
    pairs = {a: m.ablations[a] for a in m.variants if a in m.ablations}
    diffs = repro.ablation_metric_diffs(df, m.scenes, pairs, ("psnr", "ssim", *_depth_metrics(df)))
    rows = []
    for _, d in diffs.iterrows():
        scene, ablation, base = d["scene"], d["ablation"], d["base"]
        configs = {v: run_config(m, scene, v, seed) for v in (base, ablation)}
        views, weights = files.ablation_figures(scene, ablation, base, seed)
        spread = conc[conc["scene"] == scene].groupby("variant")["spread"].mean()
        rows.append(
            {
                **d.to_dict(),
                "changes": fmt_changes(repro.settings_diff(configs[base], configs[ablation])),
                "spread_base": float(spread[base]),
                "spread_ablation": float(spread[ablation]),
                "views": views,
                "weights": weights,
            }
        )
    return pd.DataFrame(rows, columns=[*diffs.columns, *ABLATION_EXTRA_COLUMNS])


def write_csv_files(out_dir: Path, df: pd.DataFrame, agg: pd.DataFrame, paired: pd.DataFrame,
                    ablations: pd.DataFrame, conc: pd.DataFrame) -> None:
    """runs.csv, report.csv, paired.csv, ablations.csv and concentration.csv into `out_dir`."""
    for key, frame in (("runs", df), ("csv", agg), ("paired", paired), ("ablations", ablations),
                       ("concentration", conc)):
        write_text(out_dir / REPORT_FILES[key], frame.to_csv(index=False))


# ---------------------------------------------------------------------------- cell text


def fmt_seconds(s: float, unit_of: float | None = None) -> str:
    """Seconds as s, min or h; the unit is chosen from `unit_of` (default `s`) so a std matches its mean."""
    ref = s if unit_of is None else unit_of
    if ref < 120:
        return f"{s:.1f} s"
    if ref < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def fmt_value(col: Column, value: float) -> str:
    if col.key == "train_seconds":
        return fmt_seconds(value)
    if col.key in ("rays_per_second", "n_params"):
        return f"{value:,.0f}"
    return f"{value:.{col.digits}f}"


def cell(col: Column, row: pd.Series, show_std: bool) -> str:
    """A table cell: the value (`n/a` when missing), `± std` when `show_std`."""
    value = row[col.key]
    if value is None or math.isnan(value):
        return "n/a"
    text = fmt_value(col, value)
    std = row[f"{col.key}_std"]
    if show_std and col.key != "n_params" and not math.isnan(std):
        std_text = fmt_seconds(std, value) if col.key == "train_seconds" else fmt_value(col, std)
        text = f"{text} ± {std_text}"
    return text


def table_cells(agg: pd.DataFrame, show_std: bool,
                columns: tuple[Column, ...] = COLUMNS) -> list[tuple[pd.Series, list[tuple[str, bool]]]]:
    """For each table row: the row and its cells as (text, is_best), one per column of `columns`
    (`table_columns(agg)` for every column the table has)."""
    out = []
    for _, row in agg.iterrows():
        cells = []
        for col in columns:
            best = bool(row.get(f"best_{col.key}", False))
            cells.append((cell(col, row, show_std), best))
        out.append((row, cells))
    return out


def footnotes(df: pd.DataFrame) -> dict[str, str]:
    """Why a metric is n/a: note key ("lpips", "normals") -> sentence."""
    notes: dict[str, str] = {}
    missing = df[df["lpips"].isna()]
    if len(missing):
        reasons = sorted({str(n).strip() for n in missing["lpips_note"] if str(n).strip()})
        notes["lpips"] = (
            "LPIPS not available: " + ("; ".join(reasons) if reasons else "no reason given") + "."
        )
    if df["normal_mae_deg"].isna().any():
        notes["normals"] = (
            "Normal MAE not available: the evaluation recorded no normal error for these runs "
            "(no ground-truth normals or no normals rendered)."
        )
    if any(df[key].isna().any() for key in _depth_metrics(df)):
        notes["depth"] = (
            "Floaters and depth MAE not available: the scene has no ground-truth depth, or the run was "
            "evaluated before these metrics existed."
        )
    return notes


def cell_note(col: Column, text: str, notes: dict[str, str]) -> str | None:
    """The footnote key an `n/a` cell refers to, if any."""
    if text != "n/a":
        return None
    if col.key == "lpips" and "lpips" in notes:
        return "lpips"
    if col.key == "normal_mae_deg" and "normals" in notes:
        return "normals"
    if col in DEPTH_COLUMNS and "depth" in notes:
        return "depth"
    return None


def digits(metric: str) -> int:
    """Decimals of a paired difference: one more than the metric's own."""
    return next(c.digits for c in ALL_COLUMNS if c.key == metric) + 1


def fmt_ci(res: pd.Series, n_digits: int) -> tuple[str, str]:
    mean = f"{res['mean_diff']:+.{n_digits}f}"
    if math.isnan(res["ci_low"]):
        return mean, "n/a"
    return mean, f"[{res['ci_low']:+.{n_digits}f}, {res['ci_high']:+.{n_digits}f}]"


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 1e-3 else f"{p:.3f}"


def fmt_num(value: float, n_digits: int, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{n_digits}f}" if signed else f"{value:.{n_digits}f}"


def fmt_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items()) or "(none)"


def run_detail(key: str, value: Any) -> str:
    """A cell of the per-run table (RUN_DETAIL_COLUMNS)."""
    if key == "final_loss":
        return f"{float(value):.3g}"
    if key in ("psnr", "psnr_softl1"):
        return f"{float(value):.2f}"
    return str(value)
