"""From the files a manifest names to tidy pandas DataFrames, one per concern.

- `collect`: one row per run (summary.json and metrics.json fields) -> runs.csv and every table;
- `train_logs`: the train_log.csv rows of every run, long form -> the training curves;
- `WeightProfiles` / `concentration`: the weights.json files -> the NeRF weight spread of every
  run of an ablation pair (concentration.csv) and the reproduced figures;
- `run_config`: one run's resolved settings (config.json) -> the ablations' changed settings.

A missing or inconsistent input is a NerfpipeError naming the file.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nerfpipe import figures_repro as repro
from nerfpipe.errors import NerfpipeError
from nerfpipe.io import read_json
from nerfpipe.reporting.manifest import Manifest, check_manifest

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
# From ground-truth depth (nerfpipe.stages.evaluate): absent from older metrics.json, null for scenes
# without depth. A column appears in `collect`'s frame only when some run has a value.
DEPTH_METRICS_KEYS = ("floater_fraction", "floater_fraction_foreground", "floater_fraction_background",
                      "depth_mae", "floater_distance")
# Per-scale means of a multiscale run (mip-NeRF sec. 5; nerfpipe.data.multiscale): absent otherwise, and
# then left out of `collect`'s frame like the depth keys.
PER_SCALE_METRICS_KEYS = tuple(f"{k}_s{f}" for f in (1, 2, 4, 8) for k in ("psnr", "ssim"))
TRAIN_LOG_COLUMNS = ("iteration", "elapsed_s", "loss", "psnr")
NULLABLE = ("lpips", "lpips_note", "normal_mae_deg")
CONCENTRATION_COLUMNS = ("scene", "variant", "seed", "spread")


def require(path: Path) -> Path:
    if not path.is_file():
        raise NerfpipeError(f"{path}: file not found (needed by the report)")
    return path


def _read_keys(path: Path, keys: tuple[str, ...], expect: dict[str, Any]) -> dict[str, Any]:
    data = read_json(require(path))
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
    train_backend, skipped_steps, samples_per_ray, train_precision, and those of DEPTH_METRICS_KEYS and
    PER_SCALE_METRICS_KEYS that some run has (NaN in the others). Rows are ordered scene, variant, seed.
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
        for key in (*DEPTH_METRICS_KEYS, *PER_SCALE_METRICS_KEYS):
            row[key] = metrics.get(key)
        rows.append(row)
    df = pd.DataFrame(rows)
    for key in ("lpips", "normal_mae_deg", *DEPTH_METRICS_KEYS, *PER_SCALE_METRICS_KEYS):
        df[key] = pd.to_numeric(df[key].astype(object).where(df[key].notna(), np.nan), errors="coerce")
    df = df.drop(columns=[k for k in (*DEPTH_METRICS_KEYS, *PER_SCALE_METRICS_KEYS) if df[k].isna().all()])
    df["lpips_note"] = df["lpips_note"].astype(object).where(df["lpips_note"].notna(), "")
    return df


def load_train_log(path: Path) -> pd.DataFrame:
    """Read a train_log.csv and check it has the columns the plots use."""
    require(path)
    try:
        log = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise NerfpipeError(f"{path}: cannot parse CSV ({exc})") from exc
    missing = [c for c in TRAIN_LOG_COLUMNS if c not in log.columns]
    if missing:
        raise NerfpipeError(f"{path}: missing column(s) {', '.join(missing)}")
    return log


def train_logs(m: Manifest, scene: str) -> pd.DataFrame:
    """The training logs of one scene, long form: columns variant, seed and TRAIN_LOG_COLUMNS,
    one block of rows per run in variant x seed order."""
    logs = []
    for variant, seed in itertools.product(m.variants, m.seeds):
        log = load_train_log(m.files(scene, variant, seed)["train_log"])
        logs.append(log[list(TRAIN_LOG_COLUMNS)].assign(variant=variant, seed=seed))
    return pd.concat(logs, ignore_index=True)[["variant", "seed", *TRAIN_LOG_COLUMNS]]


class WeightProfiles:
    """The weights.json of each run (nerfpipe.figures_repro.read_weight_profiles), read once."""

    def __init__(self, m: Manifest) -> None:
        self._m = m
        self._cache: dict[tuple[str, str, int], dict[str, Any]] = {}

    def __call__(self, scene: str, variant: str, seed: int) -> dict[str, Any]:
        key = (scene, variant, seed)
        if key not in self._cache:
            self._cache[key] = repro.read_weight_profiles(self._m.files(*key)["weights"], variant)
        return self._cache[key]

    def path(self, scene: str, variant: str, seed: int) -> Path:
        return self._m.files(scene, variant, seed)["weights"]


def ablation_pairs(m: Manifest) -> list[tuple[str, str]]:
    """(ablation, base) of every ablation variant, in variant order."""
    return [(a, m.ablations[a]) for a in m.variants if a in m.ablations]


def concentration(m: Manifest, profiles: WeightProfiles) -> pd.DataFrame:
    """The NeRF weight spread (`figures_repro.concentration`) of every run of an ablation pair:
    columns scene, variant, seed, spread; variants in the manifest's order."""
    pairs = ablation_pairs(m)
    in_pairs = [v for v in m.variants if any(v in pair for pair in pairs)]
    rows = [
        {"scene": scene, "variant": v, "seed": s, "spread": repro.concentration(profiles(scene, v, s))}
        for scene in m.scenes
        for v in in_pairs
        for s in m.seeds
    ]
    return pd.DataFrame(rows, columns=list(CONCENTRATION_COLUMNS))


def run_config(m: Manifest, scene: str, variant: str, seed: int) -> dict[str, Any]:
    """The resolved settings a run was trained with (its config.json)."""
    return read_json(require(m.files(scene, variant, seed)["config"]))
