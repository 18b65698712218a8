"""Every file of the report, written into one (new, empty) folder; nerfpipe.stages.report wraps this
in the transaction that swaps the folder into place."""

from __future__ import annotations

from pathlib import Path

from nerfpipe.io import write_text
from nerfpipe.layout import REPORT_DIRS, REPORT_FILES
from nerfpipe.reporting import claims, collect, efficiency, figures, media, tables
from nerfpipe.reporting.content import ReportContent
from nerfpipe.reporting.html import html
from nerfpipe.reporting.manifest import Manifest
from nerfpipe.reporting.markdown import markdown
from nerfpipe.reporting.published import published_section


def write_report(m: Manifest, out_dir: Path) -> None:
    """Every file of the report, written into the (new, empty) folder `out_dir`."""
    runs = collect.collect(m)
    table = tables.aggregate(runs, m.scenes, m.variants)
    paired = tables.paired_table(runs, m.variants, m.baseline)
    logs = {scene: collect.train_logs(m, scene) for scene in m.scenes}
    plots = figures.write_plots(m, runs, table, logs, out_dir)
    effic = efficiency.write_efficiency(runs, m.variants, out_dir)  # None: < 2 variants measured
    copies = media.copy_media(m, out_dir)

    profiles = collect.WeightProfiles(m)
    concentration = collect.concentration(m, profiles)
    ablations = tables.ablation_table(m, runs, concentration)
    figures.write_ablation_figures(m, ablations, profiles, out_dir)
    distillation = figures.write_distillation_figures(m, runs, profiles, out_dir)

    content = ReportContent(
        scenes=m.scenes, variants=m.variants, seeds=m.seeds, baseline=m.baseline, runs=runs,
        table=table, paired=paired, notes=tables.footnotes(runs), plots=plots, media=copies,
        pairs=collect.ablation_pairs(m), ablations=ablations, concentration=concentration,
        distillation=distillation, published=published_section(m, runs),
        claims=claims.claims_table(runs, m.claims, m.scenes),
        efficiency=effic,
    )
    for name in REPORT_DIRS.values():
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    tables.write_csv_files(out_dir, runs, table, paired, ablations, concentration)
    write_text(out_dir / REPORT_FILES["md"], markdown(content))
    write_text(out_dir / REPORT_FILES["html"], html(content, out_dir))
