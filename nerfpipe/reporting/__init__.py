"""The report's building blocks: one table, plots and media for every scene x variant x seed.

Reads only the files a *manifest* names (`manifest.py`; the workflow's report_manifest rule
writes it, `manifest_from_config` / `manifest_from_results` build it by hand), and the report
stage (nerfpipe.stages.report.build_report) writes into the report folder
(nerfpipe.layout.REPORT_FILES and REPORT_DIRS, plus the STAGE_MARKER) as one transaction:

    report.md          the table (mean ± std over seeds), footnotes, paired comparisons, figures
    report.csv         the table in machine-readable form (one row per scene x variant, plus a
                       "mean" row per variant), full precision, with best_<metric> flags
    runs.csv           one row per run (everything `collect` read)
    paired.csv         each variant against the baseline: mean difference and 95% t interval
    ablations.csv      each ablation variant against its base per scene: metric differences and
                       the weight spread of both (section "Reproducing the original's figures")
    concentration.csv  the NeRF weight spread of every run of an ablation pair
    report.html        the same as one page: sortable tables, one collapsible section per scene;
                       GIFs, videos and larger figures linked from figures/ and videos/ beside
                       it (open it from the report folder), small PNGs embedded
    figures/           plots (PNG), evaluation strips and orbit GIFs (copies)
    videos/            copies of the orbit mp4 files

The headline metric is `psnr` (MSE-based); `psnr_softl1` is the legacy figure, kept beside
it so the gap stays visible. A missing input is a NerfpipeError naming the file.

Modules, in the order the data flows:

    manifest.py   the manifest: build, check, load, write
    collect.py    the files a manifest names -> tidy DataFrames (runs, train logs, weight spread)
    tables.py     aggregation over seeds, paired comparisons (nerfpipe.stats), ablations, CSV files
    figures.py    matplotlib figures, including the original's (nerfpipe.figures_repro)
    media.py      copies of strips (enlarged when small), orbit GIFs and videos
    published.py  the papers' published per-scene figures (published.yaml) beside the reproduced ones
    claims.py     the claims section: each declared claim's paired difference, interval and verdict
    efficiency.py PSNR against MLP evaluations per ray and train time (mip-NeRF 360's distillation)
    multiscale.py the per-scale table of multiscale runs (mip-NeRF sec. 5)
    content.py    what the documents show, and the sentences they share
    markdown.py   report.md
    html.py       report.html, from templates/report.html.j2 (+ report.css, report.js)
    files.py      the names of everything the report writes
    build.py      every file of the report into one folder (the stage swaps it into place)
"""

from nerfpipe.reporting.build import write_report
from nerfpipe.reporting.collect import collect, load_train_log
from nerfpipe.reporting.files import report_entries
from nerfpipe.reporting.manifest import (
    RUN_FILES,
    Manifest,
    check_manifest,
    check_settings,
    load_manifest,
    manifest_from_config,
    manifest_from_inputs,
    manifest_from_results,
    parse_settings,
    write_manifest,
)
from nerfpipe.reporting.tables import COLUMNS, aggregate, paired_table

__all__ = [
    "COLUMNS",
    "RUN_FILES",
    "Manifest",
    "aggregate",
    "check_manifest",
    "check_settings",
    "collect",
    "load_manifest",
    "load_train_log",
    "manifest_from_config",
    "manifest_from_inputs",
    "manifest_from_results",
    "paired_table",
    "parse_settings",
    "report_entries",
    "write_manifest",
    "write_report",
]
