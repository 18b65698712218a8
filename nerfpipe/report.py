"""Report stage: one table, plots and media for every scene x variant x seed.

Reads only the files a *manifest* names (`check_manifest`): settings plus one entry per run,

    {"scenes": [...], "variants": [...], "seeds": [...], "baseline": "nerf",
     "ablations": {ablation: base, ...},
     "runs": [{"scene", "variant", "seed", "summary", "train_log", "config", "metrics",
               "per_image", "weights", "renders", "rgb_gif", "depth_gif", "normal_gif",
               "rgb_mp4"}, ...]}     (paths; relative ones from the current folder)

The workflow's `report_manifest` rule writes it from its declared inputs; by hand,
`manifest_from_config` / `manifest_from_results` build the same from nerfpipe.layout. The
summary.json, train_log.csv, metrics.json, renders/000_strip.png and the orbit GIFs and mp4 go
into the table and media; `build_report` writes into `out_dir` (the outputs the report rule
declares, nerfpipe.layout.REPORT_FILES and REPORT_DIRS, plus the STAGE_MARKER):

    report.md     the table (mean ± std over seeds), footnotes, paired comparisons, figures
    report.csv    the table in machine-readable form (one row per scene x variant, plus a
                  "mean" row per variant), full precision, with best_<metric> flags
    runs.csv      one row per run (everything `collect` read)
    paired.csv    each variant against the baseline: mean difference and 95% t interval
    report.html   self-contained page: tables, plots, strips and orbit GIFs embedded as
                  base64; mp4 links point into videos/ next to it
    ablations.csv each ablation variant against its base per scene: metric differences and the
                  weight spread of both (section "Reproducing the original's figures")
    concentration.csv  the NeRF weight spread of every run of an ablation pair
    figures/      plots (PNG), evaluation strips and orbit GIFs (copies, for report.md)
    videos/       copies of the orbit mp4 files

The section "Reproducing the original's figures" (`nerfpipe.figures_repro`) also reads each
run's weights.json, renders/000_rgb.png and 000_depth.png, and config.json.

The report is one transaction: built in a temporary sibling folder and swapped onto `out_dir`
only when complete (a failure leaves the previous report as it was); an `out_dir` that is
neither empty nor a previous report is refused.

The headline metric is `psnr` (MSE-based); `psnr_softl1` is the legacy figure, kept beside
it so the gap stays visible. A missing input is a NerfpipeError naming the file.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nerfpipe import figures_repro as repro
from nerfpipe import guard
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import make_temp_dir, parse_json, read_json, replace_dir, write_bytes, write_json, write_text
from nerfpipe.layout import (
    EVAL_FILES,
    EVAL_RENDERS,
    NAME_RE,
    RENDER_FILES,
    REPORT_DIRS,
    REPORT_FILES,
    STAGE_MARKER,
    TRAIN_FILES,
    run_dir,
    run_rel,
)
from nerfpipe.stats import CONFIDENCE, paired_comparison

MEAN_ROW = "mean"
STRIP_VIEW = 0  # first test view


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

SUMMARY_KEYS = (
    "method",
    "iterations",
    "train_seconds",
    "rays_per_second",
    "n_params",
    "final_loss",
    "backend",
    "skipped_steps",
    "samples_per_ray",
)
METRICS_KEYS = (
    "psnr",
    "psnr_softl1",
    "psnr_gap",
    "ssim",
    "lpips",
    "lpips_note",
    "normal_mae_deg",
    "n_images",
    "height",
    "width",
    "softl1_eps",
    "backend",
)
TRAIN_LOG_COLUMNS = ("iteration", "elapsed_s", "loss", "psnr")
NULLABLE = ("lpips", "lpips_note", "normal_mae_deg")

LEGACY_SENTENCE = (
    "PSNR-SoftL1 is the legacy figure of the original implementation, −10·log10 of the mean SoftL1 "
    "loss √(e² + ε) rather than of the mean squared error; since √(e² + ε) ≥ |e| is far larger than "
    "e² for small errors, it sits several dB below the true PSNR and must not be compared with "
    "published numbers."
)


# ---------------------------------------------------------------------------- manifest

# What the report reads of one run, by manifest key: the layout's file names (nerfpipe.layout)
# and the stage folder each lies in. `renders` is a folder (evaluation renders), the rest files.
RUN_FILES: dict[str, tuple[str, str]] = {
    "summary": ("train", TRAIN_FILES["summary"]),
    "train_log": ("train", TRAIN_FILES["train_log"]),
    "config": ("train", TRAIN_FILES["config"]),
    "metrics": ("eval", EVAL_FILES["metrics"]),
    "per_image": ("eval", EVAL_FILES["per_image"]),
    "weights": ("eval", EVAL_FILES["weights"]),
    "renders": ("eval", EVAL_RENDERS),
    "rgb_gif": ("render", RENDER_FILES["rgb_gif"]),
    "depth_gif": ("render", RENDER_FILES["depth_gif"]),
    "normal_gif": ("render", RENDER_FILES["normal_gif"]),
    "rgb_mp4": ("render", RENDER_FILES["rgb_mp4"]),
}
RUN_FOLDERS = ("renders",)
NULLABLE_FILES = ("normal_gif",)  # null: that run has no normals GIF
SETTINGS_KEYS = ("scenes", "variants", "seeds", "baseline", "ablations")
MANIFEST_KEYS = (*SETTINGS_KEYS, "runs")
RUN_KEYS = ("scene", "variant", "seed", *RUN_FILES)
FIGURES, VIDEOS = REPORT_DIRS["figures"], REPORT_DIRS["videos"]
STAGE = "report"  # the stage named by the STAGE_MARKER in a report folder (nerfpipe.guard)

RunKey = tuple[str, str, int]


@dataclass(frozen=True)
class Manifest:
    """A checked report manifest: the settings and, per run, the paths of the files it reads."""

    source: str  # where it came from (the manifest file, "--settings", ...), for error messages
    scenes: list[str]
    variants: list[str]
    seeds: list[int]
    baseline: str
    ablations: dict[str, str]
    runs: dict[RunKey, dict[str, Path | None]]  # in the manifest's order

    def files(self, scene: str, variant: str, seed: int) -> dict[str, Path | None]:
        return self.runs[(scene, variant, seed)]


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NerfpipeError(f"{where}: expected a JSON object, got {_kind(value)}")
    return value


def _keys(obj: dict[str, Any], where: str, required: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    missing = [k for k in required if k not in obj]
    if missing:
        raise NerfpipeError(f"{where}: missing key(s) {', '.join(missing)}")
    unknown = [str(k) for k in obj if k not in allowed]
    if unknown:
        raise NerfpipeError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise NerfpipeError(f"{where}: expected a non-empty list of names, got {_kind(value)} {value!r}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise NerfpipeError(f"{where}[{i}]: {name!r} is not a name (letters, digits and underscores)")
    _no_repeats(value, where)
    return list(value)


def _no_repeats(values: list[Any], where: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise NerfpipeError(f"{where}: {value!r} is listed twice")
        seen.add(value)


def check_settings(value: Any, source: str, ablations_required: bool = False) -> dict[str, Any]:
    """The report settings {"scenes", "variants", "seeds", "baseline", "ablations"} checked:
    a NerfpipeError naming `source` and the key on a missing key, wrong type or unknown name.
    `ablations` (ablation variant -> its base) defaults to none unless `ablations_required`."""
    obj = _object(value, source)
    required = SETTINGS_KEYS if ablations_required else SETTINGS_KEYS[:-1]
    _keys(obj, source, required, SETTINGS_KEYS)
    scenes = _names(obj["scenes"], f"{source}: scenes")
    variants = _names(obj["variants"], f"{source}: variants")
    seeds = obj["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise NerfpipeError(f"{source}: seeds: expected a non-empty list of integers, got {_kind(seeds)}")
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise NerfpipeError(f"{source}: seeds[{i}]: expected an integer >= 0, got {seed!r}")
    _no_repeats(seeds, f"{source}: seeds")
    baseline = obj["baseline"]
    if not isinstance(baseline, str) or baseline not in variants:
        raise NerfpipeError(f"{source}: baseline: {baseline!r} is not one of the variants {variants}")
    ablations = _object(obj.get("ablations", {}), f"{source}: ablations")
    for ablation, base in ablations.items():
        for role, name in (("ablation", ablation), ("base", base)):
            if name not in variants:
                raise NerfpipeError(
                    f"{source}: ablations: {role} {name!r} is not one of the variants {variants}"
                )
        if ablation == base:
            raise NerfpipeError(f"{source}: ablations: {ablation!r} is its own base")
    return {"scenes": scenes, "variants": variants, "seeds": list(seeds), "baseline": baseline,
            "ablations": dict(ablations)}


def parse_settings(text: str, source: str = "--settings") -> dict[str, Any]:
    """check_settings of a JSON string (what `nerfpipe report --settings` receives)."""
    return check_settings(parse_json(text, source), source)


def check_manifest(value: Any, source: str) -> Manifest:
    """A manifest (JSON object) checked: the settings (check_settings), and `runs` listing every
    scene x variant x seed exactly once with a path (a non-empty string) for every key of RUN_FILES.
    Errors name `source` and the key, e.g. `report.json: runs[3].weights: ...`."""
    if isinstance(value, Manifest):
        return value
    obj = _object(value, source)
    _keys(obj, source, MANIFEST_KEYS, MANIFEST_KEYS)
    settings = check_settings({k: obj[k] for k in SETTINGS_KEYS}, source, ablations_required=True)
    scenes, variants, seeds = settings["scenes"], settings["variants"], settings["seeds"]
    entries = obj["runs"]
    if not isinstance(entries, list):
        raise NerfpipeError(f"{source}: runs: expected a list of run objects, got {_kind(entries)}")
    runs: dict[RunKey, dict[str, Path | None]] = {}
    for i, entry in enumerate(entries):
        where = f"{source}: runs[{i}]"
        _keys(_object(entry, where), where, RUN_KEYS, RUN_KEYS)
        for key, allowed in (("scene", scenes), ("variant", variants), ("seed", seeds)):
            value = entry[key]
            if type(value) is not type(allowed[0]) or value not in allowed:  # no 0.0 or True for 0
                raise NerfpipeError(f"{where}.{key}: {value!r} is not one of the {key}s {allowed}")
        run = (entry["scene"], entry["variant"], entry["seed"])
        if run in runs:
            raise NerfpipeError(f"{where}: run {run_rel(*run)} is listed twice")
        files: dict[str, Path | None] = {}
        for key in RUN_FILES:
            path = entry[key]
            if path is None and key in NULLABLE_FILES:
                files[key] = None
            elif isinstance(path, str) and path:
                files[key] = Path(path)
            else:
                raise NerfpipeError(f"{where}.{key}: expected a path (a non-empty string), got {path!r}")
        runs[run] = files
    absent = [run_rel(*r) for r in itertools.product(scenes, variants, seeds) if r not in runs]
    if absent:
        more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
        raise NerfpipeError(
            f"{source}: runs: no entry for {', '.join(absent[:3])}{more} (every scene x variant x seed "
            "must be listed)"
        )
    return Manifest(source=source, runs=runs, **settings)


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest file (what the workflow's report_manifest rule writes)."""
    return check_manifest(read_json(path), str(path))


def manifest_from_results(
    results_dir: str | Path,
    scenes: list[str],
    variants: list[str],
    seeds: list[int],
    baseline: str,
    ablations: dict[str, str] | None = None,
    source: str = "report",
) -> dict[str, Any]:
    """The manifest of runs laid out below `results_dir` as nerfpipe.layout places them (what the
    workflow's report_manifest rule writes from its declared inputs), as a JSON-ready dict."""
    settings = check_settings(
        {"scenes": scenes, "variants": variants, "seeds": seeds, "baseline": baseline,
         "ablations": dict(ablations or {})},
        source,
    )
    runs = []
    for scene, variant, seed in itertools.product(
        settings["scenes"], settings["variants"], settings["seeds"]
    ):
        entry: dict[str, Any] = {"scene": scene, "variant": variant, "seed": seed}
        for key, (stage, name) in RUN_FILES.items():
            entry[key] = str(run_dir(results_dir, stage, scene, variant, seed) / name)
        runs.append(entry)
    return {**settings, "runs": runs}


def manifest_from_config(cfg: dict[str, Any], results: str | Path | None = None,
                         source: str = "config") -> dict[str, Any]:
    """manifest_from_results for a loaded config (nerfpipe.config.load_config): its scenes,
    variants, seeds, report.baseline and ablations (variants with `base:`), below `results`
    (default: the config's results root)."""
    return manifest_from_results(
        cfg["results"] if results is None else results,
        list(cfg["scenes"]),
        list(cfg["variants"]),
        list(cfg["seeds"]),
        cfg["report"]["baseline"],
        {name: v["base"] for name, v in cfg["variants"].items() if "base" in v},
        source=source,
    )


def manifest_from_inputs(settings: str | dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The manifest the workflow's report_manifest rule writes: `settings` (its params, JSON) and
    one run per scene x variant x seed in expand order, taking the i-th file of each named input
    list (`inputs`: RUN_FILES key -> the rule's input list for that key)."""
    source = "report_manifest"
    if isinstance(settings, str):
        settings = parse_settings(settings, f"{source}: params.settings")
    settings = check_settings(settings, f"{source}: params.settings", ablations_required=True)
    _keys(dict(inputs), f"{source}: input", tuple(RUN_FILES), tuple(RUN_FILES))
    order = list(itertools.product(settings["scenes"], settings["variants"], settings["seeds"]))
    lists: dict[str, list[str]] = {}
    for key, files in inputs.items():
        files = [files] if isinstance(files, (str, Path)) else list(files)
        if len(files) != len(order):
            raise NerfpipeError(f"{source}: input {key}: {len(files)} files for {len(order)} runs")
        lists[key] = [str(f) for f in files]
    runs = [
        {"scene": scene, "variant": variant, "seed": seed, **{key: lists[key][i] for key in RUN_FILES}}
        for i, (scene, variant, seed) in enumerate(order)
    ]
    return {**settings, "runs": runs}


def write_manifest(path: str | Path, settings: str | dict[str, Any], inputs: dict[str, Any],
                   log: str | Path | None = None) -> None:
    """manifest_from_inputs written to `path` (JSON), with a one-line note in `log`."""
    manifest = manifest_from_inputs(settings, inputs)
    write_json(path, manifest)
    if log is not None:
        write_text(log, f"report_manifest: {len(manifest['runs'])} runs -> {path}\n")


def _check_inputs(m: Manifest) -> None:
    """Every file the manifest names exists (a folder for RUN_FOLDERS), before anything is written."""
    for i, files in enumerate(m.runs.values()):
        for key, path in files.items():
            if path is None:
                continue
            folder = key in RUN_FOLDERS
            if not (path.is_dir() if folder else path.is_file()):
                what = "folder" if folder else "file"
                raise NerfpipeError(
                    f"{path}: {what} not found (needed by the report; {m.source}: runs[{i}].{key})"
                )


# ---------------------------------------------------------------------------- inputs


def _require(path: Path) -> Path:
    if not path.is_file():
        raise NerfpipeError(f"{path}: file not found (needed by the report)")
    return path


def _read_keys(path: Path, keys: tuple[str, ...], expect: dict[str, Any]) -> dict[str, Any]:
    data = read_json(_require(path))
    if not isinstance(data, dict):
        raise NerfpipeError(f"{path}: expected a JSON object")
    missing = [k for k in keys if k not in data]
    if missing:
        raise NerfpipeError(f"{path}: missing key(s) {', '.join(missing)}")
    for key, want in expect.items():
        if key in data and data[key] != want:
            raise NerfpipeError(f"{path}: {key} is {data[key]!r}, expected {want!r} from the manifest")
    for key in keys:
        if data[key] is None and key not in NULLABLE:
            raise NerfpipeError(f"{path}: {key} is null")
    return data


def collect(manifest: Manifest | dict[str, Any]) -> pd.DataFrame:
    """One row per scene x variant x seed with the summary.json and metrics.json fields.

    Columns: scene, variant, seed, method, psnr, psnr_softl1, psnr_gap, ssim, lpips (NaN when
    null), lpips_note, normal_mae_deg (NaN when null), n_images, height, width, softl1_eps,
    eval_backend, iterations, train_seconds, rays_per_second, n_params, final_loss,
    train_backend, skipped_steps, samples_per_ray, train_precision. Rows are ordered scene, variant, seed.
    """
    m = check_manifest(manifest, "manifest")
    rows = []
    for scene, variant, seed in itertools.product(m.scenes, m.variants, m.seeds):
        files = m.files(scene, variant, seed)
        expect = {"scene": scene, "variant": variant, "seed": seed}
        summary = _read_keys(files["summary"], SUMMARY_KEYS, expect)
        metrics = _read_keys(files["metrics"], METRICS_KEYS, expect)
        row: dict[str, Any] = dict(expect)
        row["method"] = summary["method"]
        for key in METRICS_KEYS:
            if key != "backend":
                row[key] = metrics[key]
        row["eval_backend"] = metrics["backend"]
        for key in SUMMARY_KEYS:
            if key not in ("method", "backend"):
                row[key] = summary[key]
        row["train_backend"] = summary["backend"]
        # Recorded since amp started to depend on the CPU; older runs leave it blank.
        row["train_precision"] = summary.get("precision", "")
        rows.append(row)
    df = pd.DataFrame(rows)
    for key in ("lpips", "normal_mae_deg"):
        df[key] = pd.to_numeric(df[key].astype(object).where(df[key].notna(), np.nan), errors="coerce")
    df["lpips_note"] = df["lpips_note"].astype(object).where(df["lpips_note"].notna(), "")
    return df


def load_train_log(path: Path) -> pd.DataFrame:
    """Read a train_log.csv and check it has the columns the plots use."""
    _require(path)
    try:
        log = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise NerfpipeError(f"{path}: cannot parse CSV ({exc})") from exc
    missing = [c for c in TRAIN_LOG_COLUMNS if c not in log.columns]
    if missing:
        raise NerfpipeError(f"{path}: missing column(s) {', '.join(missing)}")
    return log


# ---------------------------------------------------------------------------- tables


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def aggregate(df: pd.DataFrame, scenes: list[str], variants: list[str]) -> pd.DataFrame:
    """The report table: mean and std over seeds per scene x variant, then a mean row per variant.

    A mean row holds the mean over scenes (and seeds); its std is the spread over seeds of
    the per-seed scene average. A metric missing (NaN) in any run stays NaN in its cell.
    Adds best_<metric> flags for the ranked columns, computed within each scene (and
    among the mean rows).
    """
    rows = []
    keys = [c.key for c in COLUMNS]
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
    for col in COLUMNS:
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
    """Paired comparison of every variant against `baseline` on the ranked metrics."""
    rows = []
    better = {c.key: c.better for c in COLUMNS}
    for variant in variants:
        if variant == baseline:
            continue
        for metric in PAIRED_METRICS:
            res = paired_comparison(df, metric, baseline, variant)
            if res["n"] == 0:
                continue  # the metric is missing for one side in every pair (e.g. no LPIPS)
            res.pop("pairs")
            res["verdict"] = _verdict(res, better[metric])
            rows.append(res)
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def _verdict(res: dict[str, Any], better: str | None) -> str:
    if res["n"] < 2 or math.isnan(res["ci_low"]):
        return "too few pairs"
    if res["ci_low"] > 0 or res["ci_high"] < 0:
        up = res["ci_low"] > 0
        return "better" if up == (better == "higher") else "worse"
    return "no significant difference"


# ---------------------------------------------------------------------------- formatting


def _fmt_seconds(s: float, unit_of: float | None = None) -> str:
    """Seconds as s, min or h; the unit is chosen from `unit_of` (default `s`) so a std matches its mean."""
    ref = s if unit_of is None else unit_of
    if ref < 120:
        return f"{s:.1f} s"
    if ref < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _fmt_value(col: Column, value: float) -> str:
    if col.key == "train_seconds":
        return _fmt_seconds(value)
    if col.key in ("rays_per_second", "n_params"):
        return f"{value:,.0f}"
    return f"{value:.{col.digits}f}"


def _cell(col: Column, row: pd.Series, show_std: bool) -> str:
    value = row[col.key]
    if value is None or math.isnan(value):
        return "n/a"
    text = _fmt_value(col, value)
    std = row[f"{col.key}_std"]
    if show_std and col.key != "n_params" and not math.isnan(std):
        std_text = _fmt_seconds(std, value) if col.key == "train_seconds" else _fmt_value(col, std)
        text = f"{text} ± {std_text}"
    return text


def _table_cells(agg: pd.DataFrame, show_std: bool) -> list[tuple[pd.Series, list[tuple[str, bool]]]]:
    """For each table row: the row and its cells as (text, is_best)."""
    out = []
    for _, row in agg.iterrows():
        cells = []
        for col in COLUMNS:
            best = bool(row.get(f"best_{col.key}", False))
            cells.append((_cell(col, row, show_std), best))
        out.append((row, cells))
    return out


def _footnotes(df: pd.DataFrame) -> dict[str, str]:
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
    return notes


def _cell_note(col: Column, text: str, notes: dict[str, str]) -> str | None:
    if text != "n/a":
        return None
    if col.key == "lpips" and "lpips" in notes:
        return "lpips"
    if col.key == "normal_mae_deg" and "normals" in notes:
        return "normals"
    return None


def _fmt_ci(res: pd.Series, digits: int) -> tuple[str, str]:
    mean = f"{res['mean_diff']:+.{digits}f}"
    if math.isnan(res["ci_low"]):
        return mean, "n/a"
    return mean, f"[{res['ci_low']:+.{digits}f}, {res['ci_high']:+.{digits}f}]"


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 1e-3 else f"{p:.3f}"


# ---------------------------------------------------------------------------- plots


def _variant_colours(variants: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {v: cmap(i % 10) for i, v in enumerate(variants)}


def _save_figure(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    write_bytes(path, buf.getvalue())


def plot_training_curves(
    logs: dict[tuple[str, int], pd.DataFrame], variants: list[str], scene: str, path: Path
) -> None:
    """Loss and training PSNR against iteration and wall time, one colour per variant.

    logs: (variant, seed) -> train log of this scene; every seed is drawn.
    """
    from matplotlib.figure import Figure

    colours = _variant_colours(variants)
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for (variant, _seed), log in logs.items():
        for r, (ycol, ylabel) in enumerate((("loss", "training loss"), ("psnr", "training PSNR (dB)"))):
            for c, (xcol, xlabel) in enumerate((("iteration", "iteration"), ("elapsed_s", "wall time (s)"))):
                ax = axes[r, c]
                ax.plot(log[xcol], log[ycol], color=colours[variant], lw=1.2, alpha=0.8)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
    for ax in axes[0]:
        if all((log["loss"] > 0).all() for log in logs.values()):
            ax.set_yscale("log")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    handles = [axes[0, 0].plot([], [], color=colours[v], label=v)[0] for v in variants]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(variants), 6), frameon=False)
    fig.suptitle(f"Training curves — {scene}")
    _save_figure(fig, path)


def plot_psnr_bars(agg: pd.DataFrame, scenes: list[str], variants: list[str], path: Path) -> None:
    """Grouped bars of test PSNR per scene (one bar per variant), ± std over seeds."""
    from matplotlib.figure import Figure

    colours = _variant_colours(variants)
    fig = Figure(figsize=(max(6.0, 1.2 * len(scenes) * len(variants) + 2), 4.5))
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
            capsize=3,
        )
    ax.set_xticks(x, scenes)
    ax.set_ylabel("test PSNR (dB, MSE-based)")
    low = float(agg["psnr"].min())
    ax.set_ylim(max(0.0, low - 5.0), None)
    ax.legend(frameon=False, ncol=min(len(variants), 4))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("Test PSNR per scene")
    _save_figure(fig, path)


def plot_legacy_scatter(df: pd.DataFrame, variants: list[str], path: Path) -> None:
    """Every run's PSNR against its legacy PSNR-SoftL1, with the y = x line."""
    from matplotlib.figure import Figure

    colours = _variant_colours(variants)
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
    ax.legend(frameon=False)
    ax.grid(True, alpha=0.3)
    _save_figure(fig, path)


# ---------------------------------------------------------------------------- documents


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif"}[path.suffix.lower()]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _markdown(ctx: dict[str, Any]) -> str:
    agg, paired, notes = ctx["agg"], ctx["paired"], ctx["notes"]
    show_std = ctx["n_seeds"] > 1
    lines = [
        "# nerfpipe report",
        "",
        f"Scenes: {', '.join(ctx['scenes'])}. Variants: {', '.join(ctx['variants'])} "
        f"(baseline: {ctx['baseline']}). Seeds: {', '.join(map(str, ctx['seeds']))}.",
        "",
        "The headline metric is **PSNR** = mean over test images of −10·log10(MSE), images in [0, 1]. "
        + LEGACY_SENTENCE,
        "",
        "Best value per scene in **bold**"
        + (", cells are mean ± std over seeds." if show_std else ".")
        + " The mean rows average over scenes.",
        "",
        "| Scene | Variant | " + " | ".join(c.label for c in COLUMNS) + " |",
        "|" + "---|" * 2 + "---:|" * len(COLUMNS),
    ]
    for row, cells in _table_cells(agg, show_std):
        texts = []
        for col, (text, best) in zip(COLUMNS, cells, strict=True):
            note = _cell_note(col, text, notes)
            text = f"**{text}**" if best else text
            texts.append(text + (f"[^{note}]" if note else ""))
        scene = f"**{MEAN_ROW}**" if row["scene"] == MEAN_ROW else _md_escape(row["scene"])
        lines.append(f"| {scene} | {_md_escape(row['variant'])} | " + " | ".join(texts) + " |")
    lines.append("")
    for key, text in notes.items():
        lines.append(f"[^{key}]: {text}")
    if notes:
        lines.append("")
    lines += ["## Paired comparison against the baseline", ""]
    lines += _paired_intro(ctx)
    if len(paired):
        lines += [
            f"| Variant | Metric | Pairs | Mean difference | {CONFIDENCE:.0%} CI | p | Verdict |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for _, res in paired.iterrows():
            mean, ci = _fmt_ci(res, _digits(res["metric"]))
            lines.append(
                f"| {_md_escape(res['variant'])} | {res['metric']} | {res['n']} | {mean} | {ci} | "
                f"{_fmt_p(res['p_value'])} | {res['verdict']} |"
            )
        lines.append("")
    lines += ["## Plots", ""]
    for title, rel in ctx["plots"]:
        lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    lines += ["## Renders", ""]
    for scene in ctx["scenes"]:
        lines += [f"### {scene}", ""]
        for variant in ctx["variants"]:
            media = ctx["media"][(scene, variant)]
            lines.append(
                f"**{_md_escape(variant)}** (seed {ctx['seeds'][0]}): [orbit video (mp4)]({media['mp4']})"
            )
            lines.append("")
            lines.append(
                f"![{scene} {variant} test view {STRIP_VIEW}: ground truth | prediction | error]"
                f"({media['strip']})"
            )
            lines.append("")
            lines.append(" ".join(f"![{kind}]({rel})" for kind, rel in media["gifs"]))
            lines.append("")
    lines += _repro_markdown(ctx["repro"])
    lines += ["## Runs", "", _runs_markdown(ctx["df"]), ""]
    return "\n".join(lines)


def _digits(metric: str) -> int:
    return next(c.digits for c in COLUMNS if c.key == metric) + 1


def _paired_intro(ctx: dict[str, Any]) -> list[str]:
    return [
        f"Differences are variant − {ctx['baseline']} over matched (scene, seed) pairs, with a "
        f"{CONFIDENCE:.0%} confidence interval from the t distribution; a verdict needs the interval "
        "to exclude 0.",
        "",
    ]


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


def _run_detail(key: str, value: Any) -> str:
    if key == "final_loss":
        return f"{float(value):.3g}"
    if key in ("psnr", "psnr_softl1"):
        return f"{float(value):.2f}"
    return str(value)


def _runs_markdown(df: pd.DataFrame) -> str:
    lines = [
        "| " + " | ".join(label for _, label in RUN_DETAIL_COLUMNS) + " |",
        "|" + "---|" * len(RUN_DETAIL_COLUMNS),
    ]
    for _, r in df.iterrows():
        lines.append(
            "| " + " | ".join(_md_escape(_run_detail(k, r[k])) for k, _ in RUN_DETAIL_COLUMNS) + " |"
        )
    return "\n".join(lines)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
td.num { text-align: right; white-space: nowrap; }
tr.mean td { background: #f3f3f3; }
.note { font-size: 0.85em; color: #555; }
img.px { image-rendering: pixelated; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.8em; text-align: center; }
"""


THUMB_HEIGHT = 192  # display height of strips and GIFs in the page, in CSS pixels


def _html_thumb(path: Path, alt: str, caption: str) -> str:
    """An embedded image shown pixelated (small renders stay sharp when enlarged), with a caption."""
    return (
        f'<figure><img class="px" src="{_data_uri(path)}" height="{THUMB_HEIGHT}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _html(ctx: dict[str, Any], out_dir: Path) -> str:
    esc = html.escape
    agg, paired, notes = ctx["agg"], ctx["paired"], ctx["notes"]
    show_std = ctx["n_seeds"] > 1
    note_ids = {key: i + 1 for i, key in enumerate(notes)}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>nerfpipe report</title>',
        f"<style>{HTML_STYLE}</style></head><body>",
        "<h1>nerfpipe report</h1>",
        f"<p>Scenes: {esc(', '.join(ctx['scenes']))}. Variants: {esc(', '.join(ctx['variants']))} "
        f"(baseline: {esc(ctx['baseline'])}). Seeds: {esc(', '.join(map(str, ctx['seeds'])))}.</p>",
        "<p>The headline metric is <strong>PSNR</strong> = mean over test images of −10·log10(MSE), "
        f"images in [0, 1]. {esc(LEGACY_SENTENCE)}</p>",
        "<p>Best value per scene in <strong>bold</strong>"
        + (", cells are mean ± std over seeds." if show_std else ".")
        + " The mean rows average over scenes.</p>",
        '<table id="results"><thead><tr><th>Scene</th><th>Variant</th>'
        + "".join(f"<th>{esc(c.label)}</th>" for c in COLUMNS)
        + "</tr></thead><tbody>",
    ]
    for row, cells in _table_cells(agg, show_std):
        is_mean = row["scene"] == MEAN_ROW
        tds = []
        for col, (text, best) in zip(COLUMNS, cells, strict=True):
            content = f"<strong>{esc(text)}</strong>" if best else esc(text)
            note = _cell_note(col, text, notes)
            if note:
                content += f'<sup><a href="#note-{note}">{note_ids[note]}</a></sup>'
            tds.append(f'<td class="num">{content}</td>')
        scene = f"<strong>{MEAN_ROW}</strong>" if is_mean else esc(row["scene"])
        parts.append(
            f"<tr{' class=mean' if is_mean else ''}><td>{scene}</td><td>{esc(row['variant'])}</td>"
            + "".join(tds)
            + "</tr>"
        )
    parts.append("</tbody></table>")
    for key, text in notes.items():
        parts.append(f'<p class="note" id="note-{key}"><sup>{note_ids[key]}</sup> {esc(text)}</p>')

    parts.append("<h2>Paired comparison against the baseline</h2>")
    parts += [f"<p>{esc(p)}</p>" for p in _paired_intro(ctx) if p]
    if len(paired):
        heads = ["Variant", "Metric", "Pairs", "Mean difference", f"{CONFIDENCE:.0%} CI", "p", "Verdict"]
        parts.append(
            '<table id="paired"><thead><tr>'
            + "".join(f"<th>{h}</th>" for h in heads)
            + "</tr></thead><tbody>"
        )
        for _, res in paired.iterrows():
            mean, ci = _fmt_ci(res, _digits(res["metric"]))
            left = [res["variant"], res["metric"]]
            right = [str(res["n"]), mean, ci, _fmt_p(res["p_value"])]
            parts.append(
                "<tr>"
                + "".join(f"<td>{esc(x)}</td>" for x in left)
                + "".join(f"<td class=num>{esc(x)}</td>" for x in right)
                + f"<td>{esc(res['verdict'])}</td></tr>"
            )
        parts.append("</tbody></table>")

    parts.append("<h2>Plots</h2>")
    for title, rel in ctx["plots"]:
        parts.append(
            f'<figure><img src="{_data_uri(out_dir / rel)}" alt="{esc(title)}" style="max-width:100%">'
            f"<figcaption>{esc(title)}</figcaption></figure>"
        )

    parts.append("<h2>Renders</h2>")
    for scene in ctx["scenes"]:
        parts.append(f"<h3>{esc(scene)}</h3>")
        for variant in ctx["variants"]:
            media = ctx["media"][(scene, variant)]
            parts.append(
                f"<h4>{esc(variant)} (seed {ctx['seeds'][0]}) — "
                f'<a href="{esc(media["mp4"])}">orbit video (mp4)</a></h4>'
            )
            caption = f"test view {STRIP_VIEW}: ground truth | prediction | error"
            parts.append(_html_thumb(out_dir / media["strip"], f"{scene} {variant} strip", caption))
            for kind, rel in media["gifs"]:
                parts.append(_html_thumb(out_dir / rel, f"{scene} {variant} {kind}", kind))
    parts += _repro_html(ctx["repro"], out_dir)
    parts.append("<h2>Runs</h2><table id=runs><thead><tr>")
    parts += [f"<th>{esc(label)}</th>" for _, label in RUN_DETAIL_COLUMNS]
    parts.append("</tr></thead><tbody>")
    for _, r in ctx["df"].iterrows():
        parts.append(
            "<tr>" + "".join(f"<td>{esc(_run_detail(k, r[k]))}</td>" for k, _ in RUN_DETAIL_COLUMNS) + "</tr>"
        )
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------- reproduced figures

REPRO_TITLE = "Reproducing the original's figures"
SPREAD_SENTENCE = (
    "Spread = mean over the plotted rays of the NeRF level's weight-weighted spread of interval "
    "midpoints √(Σ w (t_mid − t̄)² / Σ w), in units of t (smaller = closer to a delta at the surface; "
    "rays with no opacity are left out)."
)
DISTILLATION_SENTENCE = (
    "Proposal-network distillation (mip-NeRF 360, Figure 4): along each plotted ray, the proposal "
    "network's histogram over its few wide intervals (filled) and the NeRF's histogram over its finer "
    "intervals (line), both drawn as densities w / interval length so they share one axis. The "
    "interlevel loss trains the proposal mass overlapping each NeRF interval to bound that interval's "
    "weight, so a trained proposal histogram envelopes the NeRF's."
)


def _fmt_num(value: float, digits: int, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _fmt_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items()) or "(none)"


def _reproduction(m: Manifest, out_dir: Path, df: pd.DataFrame) -> dict[str, Any]:
    """Figures and tables of the section REPRO_TITLE; figures are written below out_dir/figures.

    Returns {"pairs": [(ablation, base), ...] in variant order, "table": one row per scene x pair
    (metric differences, spreads, changed settings, figure paths), "concentration": one row per
    run of a pair, "distillation": [(scene, variant, seed, rel path), ...]}.
    """
    scenes, variants, seeds, ablations = m.scenes, m.variants, m.seeds, m.ablations
    pairs = [(a, ablations[a]) for a in variants if a in ablations]
    seed = seeds[0]
    profiles: dict[tuple[str, str, int], dict[str, Any]] = {}

    def load(scene: str, variant: str, s: int) -> dict[str, Any]:
        if (scene, variant, s) not in profiles:
            path = m.files(scene, variant, s)["weights"]
            profiles[(scene, variant, s)] = repro.read_weight_profiles(path, variant)
        return profiles[(scene, variant, s)]

    in_pairs = [v for v in variants if any(v in pair for pair in pairs)]
    conc_rows = [
        {"scene": scene, "variant": v, "seed": s, "spread": repro.concentration(load(scene, v, s))}
        for scene in scenes
        for v in in_pairs
        for s in seeds
    ]
    conc = pd.DataFrame(conc_rows, columns=["scene", "variant", "seed", "spread"])
    diffs = repro.ablation_metric_diffs(df, scenes, dict(pairs))
    rows = []
    for _, d in diffs.iterrows():
        scene, ablation, base = d["scene"], d["ablation"], d["base"]
        configs = {
            v: read_json(_require(m.files(scene, v, seed)["config"]))
            for v in (base, ablation)
        }
        stem = f"{scene}_{ablation}_vs_{base}_seed{seed}"
        views_rel = f"{FIGURES}/ablation_views_{stem}.png"
        weights_rel = f"{FIGURES}/ablation_weights_{stem}.png"
        views = {
            v: repro.read_view(m.files(scene, v, seed)["renders"], STRIP_VIEW)
            for v in (base, ablation)
        }
        _save_figure(
            repro.figure_ablation_views(views, f"{scene}, test view {STRIP_VIEW} (seed {seed})"),
            out_dir / views_rel,
        )
        _save_figure(
            repro.figure_ablation_weights(
                load(scene, base, seed),
                load(scene, ablation, seed),
                base,
                ablation,
                f"{scene}: NeRF-level weights along rays of test view {STRIP_VIEW}, {ablation} vs {base} "
                f"(seed {seed})",
            ),
            out_dir / weights_rel,
        )
        spread = conc[conc["scene"] == scene].groupby("variant")["spread"].mean()
        rows.append(
            {
                **d.to_dict(),
                "changes": _fmt_changes(repro.settings_diff(configs[base], configs[ablation])),
                "spread_base": float(spread[base]),
                "spread_ablation": float(spread[ablation]),
                "views": views_rel,
                "weights": weights_rel,
            }
        )
    table = pd.DataFrame(
        rows, columns=[*diffs.columns, "changes", "spread_base", "spread_ablation", "views", "weights"]
    )

    methods = df.drop_duplicates("variant").set_index("variant")["method"]
    distillation = []
    for scene in scenes:
        for variant in variants:
            if methods[variant] not in repro.PROPOSAL_METHODS:
                continue
            prof = load(scene, variant, seed)
            if prof["method"] != methods[variant]:
                path = m.files(scene, variant, seed)["weights"]
                raise NerfpipeError(
                    f"{path}: method is {prof['method']!r}, summary.json says {methods[variant]!r}"
                )
            rel = f"{FIGURES}/distillation_{scene}_{variant}_seed{seed}.png"
            title = (
                f"{scene}, {variant} (seed {seed}): proposal vs NeRF weight densities, test view {STRIP_VIEW}"
            )
            _save_figure(repro.figure_distillation(prof, title), out_dir / rel)
            distillation.append((scene, variant, seed, rel))
    return {"pairs": pairs, "table": table, "concentration": conc, "distillation": distillation}


def _ablation_intro(r: dict[str, Any]) -> str:
    if not r["pairs"]:
        return "No ablation variants (variants with `base:`) are configured."
    names = ", ".join(f"{a} (base {b})" for a, b in r["pairs"])
    return (
        f"Ablations: {names}. Each ablation variant changes only the listed settings of its base "
        "(read from the runs' config.json). Without the distortion regulariser (distortion_weight 0), "
        "mip-NeRF 360 (Figure 5) shows floaters and background collapse in the depth maps, and the weights "
        "along a ray spread out instead of concentrating at the surface. ΔPSNR and ΔSSIM are ablation − "
        "base, mean over matched seeds; the renders and weights are of the first seed."
    )


def _repro_markdown(r: dict[str, Any]) -> list[str]:
    lines = [f"## {REPRO_TITLE}", "", "### Distortion-regulariser ablation", "", _ablation_intro(r), ""]
    if r["pairs"]:
        lines += [
            SPREAD_SENTENCE,
            "",
            "| Scene | Ablation | Base | Changed settings | ΔPSNR | ΔSSIM | Spread, base "
            "| Spread, ablation |",
            "|---|---|---|---|---:|---:|---:|---:|",
        ]
        for _, row in r["table"].iterrows():
            lines.append(
                f"| {_md_escape(row['scene'])} | {_md_escape(row['ablation'])} | {_md_escape(row['base'])} | "
                f"{_md_escape(row['changes'])} | {_fmt_num(row['d_psnr'], 2, True)} | "
                f"{_fmt_num(row['d_ssim'], 4, True)} | {_fmt_num(row['spread_base'], 4)} | "
                f"{_fmt_num(row['spread_ablation'], 4)} |"
            )
        lines.append("")
        for _, row in r["table"].iterrows():
            pair = f"{row['base']} and {row['ablation']}"
            lines += [
                f"#### {row['scene']}: {row['ablation']} vs {row['base']}",
                "",
                f"![{row['scene']} renders and depth maps, {pair}]({row['views']})",
                "",
                f"![{row['scene']} NeRF weights along rays, {pair}]({row['weights']})",
                "",
            ]
        lines += ["Spread per run:", "", "| Scene | Variant | Seed | Spread |", "|---|---|---:|---:|"]
        for _, row in r["concentration"].iterrows():
            lines.append(
                f"| {_md_escape(row['scene'])} | {_md_escape(row['variant'])} | {row['seed']} | "
                f"{_fmt_num(row['spread'], 4)} |"
            )
        lines.append("")
    lines += ["### Proposal-network distillation", ""]
    if not r["distillation"]:
        lines += ["No proposal-based variant (mipnerf360, refnerf) is configured.", ""]
    else:
        lines += [DISTILLATION_SENTENCE, ""]
        for scene, variant, seed, rel in r["distillation"]:
            lines += [
                f"#### {scene}: {variant}",
                "",
                f"![{scene} {variant} seed {seed} distillation]({rel})",
                "",
            ]
    lines += ["Orbit videos of every scene and variant are in the Renders section above.", ""]
    return lines


def _html_figure(path: Path, title: str) -> str:
    return (
        f'<figure><img src="{_data_uri(path)}" alt="{html.escape(title)}" style="max-width:100%">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def _repro_html(r: dict[str, Any], out_dir: Path) -> list[str]:
    esc = html.escape
    parts = [
        f'<h2 id="reproduction">{esc(REPRO_TITLE)}</h2>',
        "<h3>Distortion-regulariser ablation</h3>",
        f"<p>{esc(_ablation_intro(r)).replace('`', '')}</p>",
    ]
    if r["pairs"]:
        heads = [
            "Scene",
            "Ablation",
            "Base",
            "Changed settings",
            "ΔPSNR",
            "ΔSSIM",
            "Spread, base",
            "Spread, ablation",
        ]
        parts += [
            f"<p>{esc(SPREAD_SENTENCE)}</p>",
            '<table id="ablations"><thead><tr>'
            + "".join(f"<th>{esc(h)}</th>" for h in heads)
            + "</tr></thead><tbody>",
        ]
        for _, row in r["table"].iterrows():
            left = [row["scene"], row["ablation"], row["base"], row["changes"]]
            right = [
                _fmt_num(row["d_psnr"], 2, True),
                _fmt_num(row["d_ssim"], 4, True),
                _fmt_num(row["spread_base"], 4),
                _fmt_num(row["spread_ablation"], 4),
            ]
            parts.append(
                "<tr>"
                + "".join(f"<td>{esc(str(x))}</td>" for x in left)
                + "".join(f"<td class=num>{esc(x)}</td>" for x in right)
                + "</tr>"
            )
        parts.append("</tbody></table>")
        for _, row in r["table"].iterrows():
            parts.append(f"<h4>{esc(row['scene'])}: {esc(row['ablation'])} vs {esc(row['base'])}</h4>")
            parts.append(
                _html_figure(out_dir / row["views"], f"renders and depth maps, test view {STRIP_VIEW}")
            )
            parts.append(_html_figure(out_dir / row["weights"], "NeRF-level weights along rays"))
        parts.append(
            '<p>Spread per run:</p><table id="concentration"><thead><tr><th>Scene</th><th>Variant</th>'
            "<th>Seed</th><th>Spread</th></tr></thead><tbody>"
        )
        for _, row in r["concentration"].iterrows():
            parts.append(
                f"<tr><td>{esc(row['scene'])}</td><td>{esc(row['variant'])}</td>"
                f"<td class=num>{row['seed']}</td><td class=num>{_fmt_num(row['spread'], 4)}</td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("<h3>Proposal-network distillation</h3>")
    if not r["distillation"]:
        parts.append("<p>No proposal-based variant (mipnerf360, refnerf) is configured.</p>")
    else:
        parts.append(f"<p>{esc(DISTILLATION_SENTENCE)}</p>")
        for scene, variant, seed, rel in r["distillation"]:
            parts.append(f"<h4>{esc(scene)}: {esc(variant)}</h4>")
            parts.append(
                _html_figure(out_dir / rel, f"{scene} {variant} seed {seed}: proposal vs NeRF densities")
            )
    parts.append("<p>Orbit videos of every scene and variant are in the Renders section above.</p>")
    return parts


# ---------------------------------------------------------------------------- stage


def _copy(src: Path, dst: Path) -> None:
    write_bytes(dst, _require(src).read_bytes())


def report_entries() -> set[str]:
    """Names of the entries of a report folder: the declared outputs (REPORT_FILES and the folders
    REPORT_DIRS, as workflow/rules/report.smk declares them) and the STAGE_MARKER."""
    return {*REPORT_FILES.values(), *REPORT_DIRS.values(), STAGE_MARKER}


def build_report(manifest: Manifest | dict[str, Any], out_dir: str | Path, source: str = "manifest") -> None:
    """Write the report of `manifest` (a Manifest, or a dict checked with check_manifest) into
    `out_dir` as one transaction: it is built in a temporary sibling folder and swapped in only
    when complete, so a failure leaves a previous report as it was. An `out_dir` that is neither
    empty nor a previous report (its STAGE_MARKER says "report"; from before the marker: only
    names of REPORT_FILES / REPORT_DIRS), or that holds or lies inside an input, is refused."""
    m = check_manifest(manifest, source)
    out_dir = Path(out_dir)
    inputs = [path for files in m.runs.values() for path in files.values() if path is not None]
    guard.check_output_dir(out_dir, STAGE, inputs=inputs,
                           legacy_names=(*REPORT_FILES.values(), *REPORT_DIRS.values()))
    _check_inputs(m)
    tmp = make_temp_dir(out_dir)
    try:
        _write_report(m, tmp)
        guard.write_marker(tmp, STAGE)
        unexpected = sorted({p.name for p in tmp.iterdir()} ^ report_entries())
        if unexpected:  # the report writes exactly what the workflow declares
            raise RuntimeError(f"report: wrote or missed undeclared entries {unexpected}")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def report(
    results_dir: str | Path,
    out_dir: str | Path,
    scenes: list[str],
    variants: list[str],
    seeds: list[int],
    baseline: str,
    ablations: dict[str, str] | None = None,
) -> None:
    """build_report of the runs below `results_dir` (manifest_from_results): report.md,
    report.csv, runs.csv, paired.csv, ablations.csv, concentration.csv, report.html, figures/
    and videos/.

    ablations: ablation variant -> the variant it is derived from (its `base:` in the config);
    both must be among `variants`. Each pair gets the distortion-ablation figures.
    """
    manifest = manifest_from_results(results_dir, scenes, variants, seeds, baseline, ablations)
    build_report(manifest, out_dir, source=f"manifest built from {results_dir}")


def _write_report(m: Manifest, out_dir: Path) -> None:
    """Every file of the report, written into the (new, empty) folder `out_dir`."""
    scenes, variants, seeds = m.scenes, m.variants, m.seeds
    df = collect(m)
    agg = aggregate(df, scenes, variants)
    paired = paired_table(df, variants, m.baseline)

    plots: list[tuple[str, str]] = []
    for scene in scenes:
        logs = {
            (variant, seed): load_train_log(m.files(scene, variant, seed)["train_log"])
            for variant in variants
            for seed in seeds
        }
        rel = f"{FIGURES}/train_{scene}.png"
        plot_training_curves(logs, variants, scene, out_dir / rel)
        plots.append((f"Training curves — {scene}", rel))
    rel = f"{FIGURES}/psnr_per_scene.png"
    plot_psnr_bars(agg, scenes, variants, out_dir / rel)
    plots.append(("Test PSNR per scene and variant", rel))
    rel = f"{FIGURES}/psnr_vs_legacy.png"
    plot_legacy_scatter(df, variants, out_dir / rel)
    plots.append(("PSNR against the legacy PSNR-SoftL1, every run", rel))

    media: dict[tuple[str, str], dict[str, Any]] = {}
    seed = seeds[0]
    for scene in scenes:
        for variant in variants:
            files = m.files(scene, variant, seed)
            stem = f"{scene}_{variant}_seed{seed}"
            strip = f"{FIGURES}/strip_{stem}.png"
            _copy(files["renders"] / f"{STRIP_VIEW:03d}_strip.png", out_dir / strip)
            gifs = []
            for kind in ("rgb", "depth", "normal"):
                src = files[f"{kind}_gif"]
                if src is None:
                    continue  # the manifest names no normals GIF for this run
                rel = f"{FIGURES}/orbit_{kind}_{stem}.gif"
                _copy(src, out_dir / rel)
                gifs.append((f"orbit {kind}", rel))
            mp4 = f"{VIDEOS}/orbit_rgb_{stem}.mp4"
            _copy(files["rgb_mp4"], out_dir / mp4)
            media[(scene, variant)] = {"strip": strip, "gifs": gifs, "mp4": mp4}

    ctx = {
        "df": df,
        "agg": agg,
        "paired": paired,
        "notes": _footnotes(df),
        "scenes": scenes,
        "variants": variants,
        "seeds": seeds,
        "baseline": m.baseline,
        "n_seeds": len(seeds),
        "plots": plots,
        "media": media,
        "repro": _reproduction(m, out_dir, df),
    }
    for name in REPORT_DIRS.values():
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    write_text(out_dir / REPORT_FILES["runs"], df.to_csv(index=False))
    write_text(out_dir / REPORT_FILES["csv"], agg.to_csv(index=False))
    write_text(out_dir / REPORT_FILES["paired"], paired.to_csv(index=False))
    write_text(out_dir / REPORT_FILES["ablations"], ctx["repro"]["table"].to_csv(index=False))
    write_text(out_dir / REPORT_FILES["concentration"], ctx["repro"]["concentration"].to_csv(index=False))
    write_text(out_dir / REPORT_FILES["md"], _markdown(ctx))
    write_text(out_dir / REPORT_FILES["html"], _html(ctx, out_dir))
