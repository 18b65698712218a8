"""Report stage as one transaction: `build_report` checks the manifest and the output folder,
writes every file into a temporary sibling folder (nerfpipe.reporting.build.write_report) and swaps
it onto the report folder only when complete, so a failure leaves the previous report as it was."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from nerfpipe import guard
from nerfpipe.io import make_temp_dir, replace_dir
from nerfpipe.layout import REPORT_DIRS, REPORT_FILES
from nerfpipe.reporting.build import write_report
from nerfpipe.reporting.files import STAGE, report_entries
from nerfpipe.reporting.manifest import Manifest, check_inputs, check_manifest, manifest_from_results


def build_report(manifest: Manifest | dict[str, Any], out_dir: str | Path, source: str = "manifest") -> None:
    """Write the report of `manifest` (a Manifest, or a dict checked with check_manifest) into
    `out_dir` as one transaction: it is built in a temporary sibling folder and swapped in only
    when complete, so a failure leaves a previous report as it was. An `out_dir` that is neither
    empty nor a previous report (its STAGE_MARKER says "report"; from before the marker: only
    names of REPORT_FILES / REPORT_DIRS), or that holds or lies inside an input, is refused."""
    m = check_manifest(manifest, source)
    out_dir = Path(out_dir)
    guard.check_output_dir(out_dir, STAGE, inputs=m.inputs(),
                           legacy_names=(*REPORT_FILES.values(), *REPORT_DIRS.values()))
    check_inputs(m)
    tmp = make_temp_dir(out_dir)
    try:
        write_report(m, tmp)
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
