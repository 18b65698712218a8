"""The papers' published per-scene figures beside the reproduced ones.

The published tables are data (published.yaml, shipped with the package), each with its source:
paper, arXiv id, table and protocol. A run gets a comparison row when its dataset and scene are
in that data and its method has a published table for that dataset:

- the dataset is the run's `dataset_name` (config.json; the train CLI's --dataset_name) when it
  recorded one, else the dataset folder the run was trained on (summary.json `data_source`, the
  data stage's `source`, e.g. data/nerf_synthetic/lego: dataset nerf_synthetic, scene lego); a
  name matches a dataset's `aliases`. Scene names alone never decide it: an embedded scene may be
  called "lego" too;
- the method is the run's `method` (summary.json), through METHOD_OF (refnerf_paper is Ref-NeRF).

`published_section` returns None when no run matches, and the report then leaves the section out.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import pandas as pd
import yaml

from nerfpipe.errors import NerfpipeError
from nerfpipe.io import read_json
from nerfpipe.reporting.collect import require
from nerfpipe.reporting.manifest import Manifest

PUBLISHED_FILE = Path(__file__).with_name("published.yaml")
# (metric, label, decimals): decimals as the published tables print them.
METRICS: tuple[tuple[str, str, int], ...] = (
    ("psnr", "PSNR", 2),
    ("ssim", "SSIM", 3),
    ("lpips", "LPIPS", 3),
    ("normal_mae_deg", "Normal MAE (°)", 2),
)
# nerfpipe's method -> the method whose published figures it is compared with.
METHOD_OF = {"nerf": "nerf", "mipnerf": "mipnerf", "mipnerf360": "mipnerf360", "refnerf": "refnerf",
             "refnerf_paper": "refnerf"}
SOURCE_KEYS = ("paper", "authors", "arxiv", "table", "checked_against")
COMPARISON_COLUMNS = ("scene", "variant", "method", "paper", "metric", "published", "reproduced", "gap",
                      "n_seeds")
RUN_COLUMNS = ("scene", "variant", "seed", "hardware", "iterations", "train_seconds", "height", "width",
               "paper_height", "paper_width")


@dataclass(frozen=True)
class Dataset:
    key: str
    name: str
    aliases: tuple[str, ...]
    scenes: tuple[str, ...]
    resolution: tuple[int, int] | None  # (height, width) of the published protocol, when known


@dataclass(frozen=True)
class Table:
    """One paper's per-scene figures on one dataset."""

    method: str
    dataset: str
    source: dict[str, Any]  # SOURCE_KEYS
    protocol: str
    scenes: dict[str, dict[str, float]]  # scene -> metric -> published value

    @property
    def label(self) -> str:
        """A short citation: paper title, arXiv id and table."""
        return f"{self.source['paper']} (arXiv {self.source['arxiv']}), {self.source['table']}"


@dataclass(frozen=True)
class Published:
    datasets: dict[str, Dataset]
    tables: list[Table]

    def dataset_of(self, name: str) -> str | None:
        """The dataset key whose aliases include `name` (case-insensitive), else None."""
        name = name.strip().lower()
        return next((d.key for d in self.datasets.values() if name in d.aliases), None)

    def table(self, method: str, dataset: str) -> Table | None:
        return next((t for t in self.tables if t.method == method and t.dataset == dataset), None)


def _check(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise NerfpipeError(f"{where}: {what}")


def parse_published(data: Any, where: str = "published.yaml") -> Published:
    """The published data checked: datasets with their scenes, and tables whose scenes, metrics and
    values fit them and whose source names paper, arXiv id and table. Errors name the key."""
    _check(isinstance(data, dict) and {"datasets", "tables"} <= set(data), where, "needs datasets and tables")
    datasets = {}
    for key, d in data["datasets"].items():
        at = f"{where}: datasets.{key}"
        _check(isinstance(d, dict) and bool(d.get("scenes")) and bool(d.get("name")), at,
               "needs name and scenes")
        res = d.get("resolution")
        _check(res is None or (isinstance(res, list) and len(res) == 2), at, "resolution is [height, width]")
        aliases = tuple(str(a).lower() for a in [key, *d.get("aliases", [])])
        datasets[key] = Dataset(key, str(d["name"]), aliases, tuple(d["scenes"]), tuple(res) if res else None)
    tables, names = [], {m for m, _, _ in METRICS}
    for i, t in enumerate(data["tables"]):
        at = f"{where}: tables[{i}]"
        _check(isinstance(t, dict) and t.get("dataset") in datasets, at, "dataset is not one of the datasets")
        _check(t.get("method") in set(METHOD_OF.values()), at, f"method {t.get('method')!r} is unknown")
        source = t.get("source") or {}
        missing = [k for k in SOURCE_KEYS if not source.get(k)]
        _check(not missing, at, f"source lacks {', '.join(missing)}")
        _check(bool(t.get("protocol")), at, "needs a protocol note")
        scenes = t.get("scenes") or {}
        _check(set(scenes) <= set(datasets[t["dataset"]].scenes), at, "a scene is not in its dataset")
        for scene, values in scenes.items():
            _check(isinstance(values, dict) and bool(values) and set(values) <= names, f"{at}.{scene}",
                   f"metrics must be some of {', '.join(sorted(names))}")
            for metric, value in values.items():
                _check(isinstance(value, int | float) and math.isfinite(value), f"{at}.{scene}.{metric}",
                       "not a number")
        tables.append(Table(t["method"], t["dataset"], dict(source), " ".join(str(t["protocol"]).split()),
                            {s: {k: float(v) for k, v in vals.items()} for s, vals in scenes.items()}))
    return Published(datasets, tables)


@functools.cache
def load_published(path: Path = PUBLISHED_FILE) -> Published:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise NerfpipeError(f"{path}: cannot read the published figures ({exc})") from exc
    return parse_published(data, str(path))


def run_dataset(scene: str, config: dict[str, Any], summary: dict[str, Any],
                published: Published) -> tuple[str, str] | None:
    """(dataset key, scene in that dataset) a run was trained on, or None (see the module text)."""
    name = config.get("dataset_name")
    if isinstance(name, str) and name.strip():
        dataset, published_scene = published.dataset_of(name), scene
    else:
        source = summary.get("data_source")
        if not isinstance(source, str) or not source or source.startswith("synthetic:"):
            return None
        folder = PurePath(source.rstrip("/\\"))
        dataset, published_scene = published.dataset_of(folder.parent.name), folder.name
    if dataset is None or published_scene not in published.datasets[dataset].scenes:
        return None
    return dataset, published_scene


@dataclass(frozen=True)
class PublishedSection:
    comparison: pd.DataFrame  # COMPARISON_COLUMNS: one row per scene x variant x published metric
    runs: pd.DataFrame  # RUN_COLUMNS: one row per compared run
    tables: list[Table]  # the published tables the rows come from, in order of first use


def _hardware(summary: dict[str, Any]) -> str:
    return str(summary.get("device_name") or summary.get("device") or "not recorded")


def published_section(m: Manifest, runs: pd.DataFrame, published: Published | None = None
                      ) -> PublishedSection | None:
    """The comparison of every run that has published figures (`runs`: collect.collect), or None.

    Reproduced = mean over the variant's matching seeds (NaN if any seed lacks the metric); gap =
    reproduced − published."""
    published = published or load_published()
    matched: dict[tuple[str, str], tuple[Table, str, list[dict[str, Any]]]] = {}
    for (scene, variant, seed), files in m.runs.items():
        summary = read_json(require(files["summary"]))
        config = read_json(require(files["config"]))
        found = run_dataset(scene, config if isinstance(config, dict) else {}, summary, published)
        if found is None:
            continue
        row = runs[(runs["scene"] == scene) & (runs["variant"] == variant) & (runs["seed"] == seed)].iloc[0]
        if pd.notna(row.get("psnr_s1", float("nan"))):
            continue  # multiscale: its PSNR / SSIM average four scales, the papers' tables are single-scale
        table = published.table(METHOD_OF.get(str(row["method"]), ""), found[0])
        if table is None:
            continue
        res = published.datasets[found[0]].resolution or (None, None)
        run = {"scene": scene, "variant": variant, "seed": seed, "hardware": _hardware(summary),
               "iterations": int(row["iterations"]), "train_seconds": float(row["train_seconds"]),
               "height": int(row["height"]), "width": int(row["width"]), "paper_height": res[0],
               "paper_width": res[1], "method": str(row["method"]), "metrics": row}
        matched.setdefault((scene, variant), (table, found[1], []))[2].append(run)
    if not matched:
        return None
    comparison, used = [], []
    for (scene, variant), (table, published_scene, group) in matched.items():
        if table not in used:
            used.append(table)
        for metric, _, _ in METRICS:
            if metric not in table.scenes.get(published_scene, {}):
                continue
            value = table.scenes[published_scene][metric]
            reproduced = float(pd.Series([float(r["metrics"][metric]) for r in group]).mean(skipna=False))
            comparison.append({"scene": scene, "variant": variant, "method": group[0]["method"],
                               "paper": table.source["paper"], "metric": metric, "published": value,
                               "reproduced": reproduced, "gap": reproduced - value, "n_seeds": len(group)})
    run_rows = [{k: r[k] for k in RUN_COLUMNS} for _, _, group in matched.values() for r in group]
    return PublishedSection(pd.DataFrame(comparison, columns=list(COMPARISON_COLUMNS)),
                            pd.DataFrame(run_rows, columns=list(RUN_COLUMNS)), used)


# ---------------------------------------------------------------------------- cell text


def fmt_value(metric: str, value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    n = next(d for k, _, d in METRICS if k == metric)
    return f"{value:+.{n}f}" if signed else f"{value:.{n}f}"


def metric_label(metric: str) -> str:
    return next(label for k, label, _ in METRICS if k == metric)


def fmt_resolution(run: pd.Series) -> str:
    """The evaluation resolution, and the paper's where it differs (e.g. a downscaled run)."""
    text = f"{run['width']}×{run['height']}"
    paper = (run["paper_height"], run["paper_width"])
    if paper[0] is not None and not pd.isna(paper[0]) and (int(paper[0]), int(paper[1])) != (
            run["height"], run["width"]):
        text += f" (paper: {int(paper[1])}×{int(paper[0])})"
    return text
