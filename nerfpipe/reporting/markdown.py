"""report.md: the tables, paired comparisons, plots, renders, the reproduced figures and the
runs, as GitHub-flavoured markdown (figures and media linked by paths relative to the report)."""

from __future__ import annotations

import pandas as pd

from nerfpipe.reporting import claims as claim_text
from nerfpipe.reporting import content as text
from nerfpipe.reporting import efficiency, multiscale
from nerfpipe.reporting.content import ReportContent
from nerfpipe.reporting.files import STRIP_VIEW
from nerfpipe.reporting.published import fmt_resolution, fmt_value, metric_label
from nerfpipe.reporting.tables import (
    MEAN_ROW,
    RUN_DETAIL_COLUMNS,
    cell_note,
    digits,
    fmt_ci,
    fmt_num,
    fmt_p,
    fmt_seconds,
    run_detail,
    table_cells,
    table_columns,
)
from nerfpipe.stats import CONFIDENCE


def md_escape(value: object) -> str:
    return str(value).replace("|", "\\|")


def markdown(c: ReportContent) -> str:
    """The whole of report.md."""
    lines = [
        f"# {text.TITLE}",
        "",
        *_claims(c),
        text.settings_sentence(c),
        "",
        "The headline metric is **PSNR** = mean over test images of −10·log10(MSE), images in [0, 1]. "
        + text.legacy_sentence(c),
        "",
        "Best value per scene in **bold**"
        + (", cells are mean ± std over seeds." if c.show_std else ".")
        + " The mean rows average over scenes.",
        "",
        *_results_table(c),
        "",
    ]
    for key, note in c.notes.items():
        lines.append(f"[^{key}]: {note}")
    if c.notes:
        lines.append("")
    lines += [f"## {text.PAIRED_TITLE}", "", text.paired_intro(c.baseline), ""]
    if len(c.paired):
        lines += [
            f"| Variant | Metric | Pairs | Mean difference | {CONFIDENCE:.0%} CI | p | Verdict |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for _, res in c.paired.iterrows():
            mean, ci = fmt_ci(res, digits(res["metric"]))
            lines.append(
                f"| {md_escape(res['variant'])} | {res['metric']} | {res['n']} | {mean} | {ci} | "
                f"{fmt_p(res['p_value'])} | {res['verdict']} |"
            )
        lines.append("")
    lines += _efficiency(c)
    lines += multiscale.markdown_lines(c.runs, c.scenes, c.variants)  # none without multiscale runs
    lines += ["## Plots", ""]
    for title, rel in c.plots:
        lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    lines += ["## Renders", ""]
    for scene in c.scenes:
        lines += [f"### {scene}", ""]
        for variant in c.variants:
            media = c.media[(scene, variant)]
            lines += [
                f"**{md_escape(variant)}** (seed {media.seed}): [orbit video (mp4)]({media.mp4})",
                "",
                f"![{scene} {variant} test view {STRIP_VIEW}: ground truth | prediction | error]"
                f"({media.strip})",
                "",
                " ".join(f"![{kind}]({rel})" for kind, rel in media.gifs),
                "",
            ]
    lines += _reproduction(c)
    lines += _published(c)
    lines += ["## Runs", "", runs_table(c.runs), ""]
    return "\n".join(lines)


def _claims(c: ReportContent) -> list[str]:
    """The claims section and the Results heading after it; nothing when no claims are declared."""
    if not c.has_claims:
        return []
    lines = [
        f"## {text.CLAIMS_TITLE}", "", text.claims_intro(), "",
        f"| Id | Paper | Claim | Metric | Variant − comparator | Scenes | Claimed | Pairs | Mean difference "
        f"| {CONFIDENCE:.0%} CI | Verdict | Reason |",
        "|---|---|---|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for _, row in c.claims.iterrows():
        mean, ci = claim_text.number_cells(row)
        cells = [row["id"], row["paper"], row["claim"], row["metric"], claim_text.compared_text(row),
                 ", ".join(row["scenes"]), claim_text.claimed_text(row), row["n"], mean, ci,
                 f"**{row['verdict']}**", row["reason"]]
        lines.append("| " + " | ".join(md_escape(cell) for cell in cells) + " |")
    notes = [(row["id"], row["note"]) for _, row in c.claims.iterrows() if row["note"]]
    if notes:
        lines += ["", text.CLAIM_NOTES_SENTENCE, ""] + [f"- {md_escape(i)}: {md_escape(n)}" for i, n in notes]
    return [*lines, "", f"## {text.RESULTS_TITLE}", ""]


def _efficiency(c: ReportContent) -> list[str]:
    """The efficiency section; nothing when fewer than two variants have samples_per_ray measured."""
    if c.efficiency is None:
        return []
    lines = [
        f"## {text.EFFICIENCY_TITLE}", "", text.efficiency_intro(c), "",
        "| Variant | " + " | ".join(label for _, label in efficiency.COLUMNS) + " |",
        "|---|" + "---:|" * len(efficiency.COLUMNS),
    ]
    for _, row in c.efficiency.table.iterrows():
        texts = [t for t, _ in efficiency.cells(row, c.show_std)]
        lines.append(f"| {md_escape(row['variant'])} | " + " | ".join(texts) + " |")
    title = "Test PSNR against MLP evaluations per ray and training wall time"
    return [*lines, "", f"![{title}]({c.efficiency.figure})", ""]


def _results_table(c: ReportContent) -> list[str]:
    columns = table_columns(c.table)
    lines = [
        "| Scene | Variant | " + " | ".join(col.label for col in columns) + " |",
        "|" + "---|" * 2 + "---:|" * len(columns),
    ]
    for row, cells in table_cells(c.table, c.show_std, columns):
        texts = []
        for col, (value, best) in zip(columns, cells, strict=True):
            note = cell_note(col, value, c.notes)
            value = f"**{value}**" if best else value
            texts.append(value + (f"[^{note}]" if note else ""))
        scene = f"**{MEAN_ROW}**" if row["scene"] == MEAN_ROW else md_escape(row["scene"])
        lines.append(f"| {scene} | {md_escape(row['variant'])} | " + " | ".join(texts) + " |")
    return lines


def _reproduction(c: ReportContent) -> list[str]:
    lines = [f"## {text.REPRO_TITLE}", "", f"### {text.ABLATION_TITLE}", "", text.ablation_intro(c.pairs), ""]
    if c.pairs:
        lines += [
            text.SPREAD_SENTENCE,
            "",
            "| Scene | Ablation | Base | Changed settings | ΔPSNR | ΔSSIM | Spread, base "
            "| Spread, ablation |",
            "|---|---|---|---|---:|---:|---:|---:|",
        ]
        for _, row in c.ablations.iterrows():
            lines.append(
                f"| {md_escape(row['scene'])} | {md_escape(row['ablation'])} | {md_escape(row['base'])} | "
                f"{md_escape(row['changes'])} | {fmt_num(row['d_psnr'], 2, True)} | "
                f"{fmt_num(row['d_ssim'], 4, True)} | {fmt_num(row['spread_base'], 4)} | "
                f"{fmt_num(row['spread_ablation'], 4)} |"
            )
        lines.append("")
        for _, row in c.ablations.iterrows():
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
        for _, row in c.concentration.iterrows():
            lines.append(
                f"| {md_escape(row['scene'])} | {md_escape(row['variant'])} | {row['seed']} | "
                f"{fmt_num(row['spread'], 4)} |"
            )
        lines.append("")
    lines += [f"### {text.DISTILLATION_TITLE}", ""]
    if not c.distillation:
        lines += [text.NO_PROPOSAL_SENTENCE, ""]
    else:
        lines += [text.DISTILLATION_SENTENCE, ""]
        for scene, variant, seed, rel in c.distillation:
            image = f"![{scene} {variant} seed {seed} distillation]({rel})"
            lines += [f"#### {scene}: {variant}", "", image, ""]
    lines += [text.ORBITS_SENTENCE, ""]
    return lines


def _published(c: ReportContent) -> list[str]:
    """The published-vs-reproduced section; nothing when no run has published figures."""
    if c.published is None:
        return []
    lines = [
        f"## {text.PUBLISHED_TITLE}", "", text.published_intro(), "",
        "| Scene | Variant | Method | Metric | Published | Reproduced | Gap | Seeds |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for _, r in c.published.comparison.iterrows():
        lines.append(
            f"| {md_escape(r['scene'])} | {md_escape(r['variant'])} | {md_escape(r['method'])} | "
            f"{metric_label(r['metric'])} | {fmt_value(r['metric'], r['published'])} | "
            f"{fmt_value(r['metric'], r['reproduced'])} | {fmt_value(r['metric'], r['gap'], True)} | "
            f"{r['n_seeds']} |"
        )
    lines += ["", text.PUBLISHED_RUNS_SENTENCE, "",
              "| Scene | Variant | Seed | Hardware | Iterations | Train time | Evaluation resolution |",
              "|---|---|---:|---|---:|---:|---|"]
    for _, r in c.published.runs.iterrows():
        lines.append(
            f"| {md_escape(r['scene'])} | {md_escape(r['variant'])} | {r['seed']} | "
            f"{md_escape(r['hardware'])} | {r['iterations']:,} | {fmt_seconds(r['train_seconds'])} | "
            f"{fmt_resolution(r)} |"
        )
    lines += ["", "Sources:", ""]
    lines += [f"- {md_escape(text.source_sentence(t))}" for t in c.published.tables]
    return [*lines, ""]


def runs_table(df: pd.DataFrame) -> str:
    """The per-run table (RUN_DETAIL_COLUMNS), one row per run."""
    lines = [
        "| " + " | ".join(label for _, label in RUN_DETAIL_COLUMNS) + " |",
        "|" + "---|" * len(RUN_DETAIL_COLUMNS),
    ]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(md_escape(run_detail(k, r[k])) for k, _ in RUN_DETAIL_COLUMNS) + " |")
    return "\n".join(lines)
