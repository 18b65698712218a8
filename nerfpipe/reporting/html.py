"""report.html: the report as one page, rendered from templates/report.html.j2 (jinja2,
autoescaped). This module only turns `ReportContent` into plain values for the template.

Media are linked by paths relative to the report folder (its figures/ and videos/), so the page
opens offline from the folder and stays small however many runs it shows; a PNG of at most
INLINE_MAX_BYTES is embedded as a data URI while the page's INLINE_BUDGET_BYTES last, so small
plots still show when the page is viewed alone. Scenes are collapsible sections, and the tables
sort by any column (templates/report.js; no external resources).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from nerfpipe.errors import NerfpipeError
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

TEMPLATES = Path(__file__).parent / "templates"
INLINE_MAX_BYTES = 64 * 1024  # a PNG up to this size is embedded ...
INLINE_BUDGET_BYTES = 1024 * 1024  # ... while the page's embedded images (base64) stay below this
OPEN_UP_TO = 12  # with at most this many scene x variant pairs every section starts open


@dataclass(frozen=True)
class Image:
    src: str  # a path relative to the report folder, or a data URI
    href: str  # the file itself (relative path), for a full-size view
    alt: str
    caption: str
    css: str  # "plot", "strip px" or "gif px" (px: enlarged with sharp pixels)


class _Sources:
    """The `src` of each image: a data URI for small PNGs while the budget lasts, else a link."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.left = INLINE_BUDGET_BYTES

    def image(self, rel: str, alt: str, caption: str, css: str) -> Image:
        href = quote(rel)
        path = self.out_dir / rel
        size = path.stat().st_size
        encoded = 4 * math.ceil(size / 3)
        if path.suffix.lower() == ".png" and size <= INLINE_MAX_BYTES and encoded <= self.left:
            self.left -= encoded
            src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        else:
            src = href
        return Image(src=src, href=href, alt=alt, caption=caption, css=css)


def _sort_key(value: Any) -> str:
    """A cell's `data-sort`: the full-precision number, empty when missing (sorted last)."""
    if value is None or isinstance(value, str):
        return ""
    value = float(value)
    return "" if math.isnan(value) else repr(value)


def _results(c: ReportContent) -> dict[str, Any]:
    note_ids = {key: i + 1 for i, key in enumerate(c.notes)}
    scenes, means = [], []
    columns = table_columns(c.table)
    for row, cells in table_cells(c.table, c.show_std, columns):
        out = []
        for col, (value, best) in zip(columns, cells, strict=True):
            note = cell_note(col, value, c.notes)
            out.append({"text": value, "best": best, "sort": _sort_key(row[col.key]), "note": note,
                        "note_id": note_ids.get(note)})
        target = means if row["scene"] == MEAN_ROW else scenes
        target.append({"scene": row["scene"], "variant": row["variant"], "cells": out})
    return {
        "heads": [col.label for col in columns],
        "bodies": [body for body in (scenes, means) if body],
        "mean_row": MEAN_ROW,
        "notes": [{"key": key, "id": note_ids[key], "text": note} for key, note in c.notes.items()],
    }


def _claims(c: ReportContent) -> dict[str, Any] | None:
    """The claims section (None: left out, no claims declared)."""
    if not c.has_claims:
        return None
    rows = []
    for _, row in c.claims.iterrows():
        mean, ci = claim_text.number_cells(row)
        rows.append({
            "text": [row["id"], row["paper"], row["claim"], row["metric"], claim_text.compared_text(row),
                     ", ".join(row["scenes"]), claim_text.claimed_text(row)],
            "numbers": [(str(row["n"]), _sort_key(row["n"])), (mean, _sort_key(row["mean_diff"])),
                        (ci, _sort_key(row["ci_low"]))],
            "verdict": row["verdict"], "reason": row["reason"],
        })
    notes = [{"id": row["id"], "text": row["note"]} for _, row in c.claims.iterrows() if row["note"]]
    return {"intro": text.claims_intro().split("`"), "rows": rows, "notes": notes}  # odd parts are code


def _paired(c: ReportContent) -> list[dict[str, Any]]:
    rows = []
    for _, res in c.paired.iterrows():
        mean, ci = fmt_ci(res, digits(res["metric"]))
        rows.append({
            "variant": res["variant"], "metric": res["metric"], "verdict": res["verdict"],
            "numbers": [(str(res["n"]), _sort_key(res["n"])), (mean, _sort_key(res["mean_diff"])),
                        (ci, _sort_key(res["ci_low"])), (fmt_p(res["p_value"]), _sort_key(res["p_value"]))],
        })
    return rows


def _efficiency(c: ReportContent, src: _Sources) -> dict[str, Any] | None:
    """The efficiency section (None: left out, fewer than two variants have samples_per_ray)."""
    if c.efficiency is None:
        return None
    rows = [{"variant": row["variant"],
             "numbers": [(t, _sort_key(v)) for t, v in efficiency.cells(row, c.show_std)]}
            for _, row in c.efficiency.table.iterrows()]
    title = "Test PSNR against MLP evaluations per ray and training wall time"
    return {"intro": text.efficiency_intro(c).split("`"),  # odd parts are code
            "heads": [label for _, label in efficiency.COLUMNS], "rows": rows,
            "figure": src.image(c.efficiency.figure, title, title, "plot")}


def _renders(c: ReportContent, src: _Sources, open_all: bool) -> list[dict[str, Any]]:
    scenes = []
    for i, scene in enumerate(c.scenes):
        runs = []
        for variant in c.variants:
            media = c.media[(scene, variant)]
            strip = src.image(media.strip, f"{scene} {variant} strip", text.STRIP_CAPTION, "strip px")
            gifs = [src.image(rel, f"{scene} {variant} {kind}", kind, "gif px") for kind, rel in media.gifs]
            runs.append({"variant": variant, "seed": media.seed, "mp4": quote(media.mp4), "strip": strip,
                         "gifs": gifs})
        scenes.append({"name": scene, "open": open_all or i == 0, "runs": runs})
    return scenes


def _by_scene(c: ReportContent, items: list[tuple[str, Any]], open_all: bool) -> list[dict[str, Any]]:
    """(scene, item) pairs grouped into one collapsible section per scene, in scene order."""
    groups = []
    for scene in c.scenes:
        found = [item for s, item in items if s == scene]
        if found:
            groups.append({"name": scene, "open": open_all or not groups, "items": found})
    return groups


def _reproduction(c: ReportContent, src: _Sources, open_all: bool) -> dict[str, Any]:
    rows, figures = [], []
    for _, row in c.ablations.iterrows():
        rows.append({
            "text": [row["scene"], row["ablation"], row["base"], row["changes"]],
            "numbers": [(fmt_num(row[key], n, signed), _sort_key(row[key])) for key, n, signed in
                        (("d_psnr", 2, True), ("d_ssim", 4, True), ("spread_base", 4, False),
                         ("spread_ablation", 4, False))],
        })
        figures.append((row["scene"], {
            "title": f"{row['scene']}: {row['ablation']} vs {row['base']}",
            "images": [src.image(row["views"], f"{row['scene']} renders and depth maps",
                                 f"renders and depth maps, test view {STRIP_VIEW}", "plot"),
                       src.image(row["weights"], f"{row['scene']} NeRF weights",
                                 "NeRF-level weights along rays", "plot")],
        }))
    distillation = [
        (scene, {"title": f"{scene}: {variant}",
                 "images": [src.image(rel, f"{scene} {variant} distillation",
                                      f"{scene} {variant} seed {seed}: proposal vs NeRF densities", "plot")]})
        for scene, variant, seed, rel in c.distillation
    ]
    return {
        "intro": text.ablation_intro(c.pairs).split("`"),  # odd parts are code
        "has_pairs": bool(c.pairs),
        "ablations": rows,
        "ablation_figures": _by_scene(c, figures, open_all),
        "concentration": [
            {"scene": r["scene"], "variant": r["variant"], "seed": r["seed"],
             "spread": fmt_num(r["spread"], 4), "sort": _sort_key(r["spread"])}
            for _, r in c.concentration.iterrows()
        ],
        "distillation": _by_scene(c, distillation, open_all),
    }


def _published(c: ReportContent) -> dict[str, Any] | None:
    """The published-vs-reproduced section (None: left out, no run has published figures)."""
    if c.published is None:
        return None
    rows = [
        {"text": [r["scene"], r["variant"], r["method"], metric_label(r["metric"])],
         "numbers": [*((fmt_value(r["metric"], r[key], key == "gap"), _sort_key(r[key]))
                       for key in ("published", "reproduced", "gap")),
                     (str(r["n_seeds"]), _sort_key(r["n_seeds"]))]}
        for _, r in c.published.comparison.iterrows()
    ]
    runs = [
        {"text": [r["scene"], r["variant"]], "seed": str(r["seed"]), "hardware": r["hardware"],
         "numbers": [(f"{r['iterations']:,}", _sort_key(r["iterations"])),
                     (fmt_seconds(r["train_seconds"]), _sort_key(r["train_seconds"]))],
         "resolution": fmt_resolution(r)}
        for _, r in c.published.runs.iterrows()
    ]
    return {"intro": text.published_intro(), "rows": rows, "runs": runs,
            "sources": [text.source_sentence(t) for t in c.published.tables]}


def _runs(df: pd.DataFrame) -> dict[str, Any]:
    return {
        "heads": [label for _, label in RUN_DETAIL_COLUMNS],
        "rows": [[run_detail(k, r[k]) for k, _ in RUN_DETAIL_COLUMNS] for _, r in df.iterrows()],
        "open": len(df) <= 3 * OPEN_UP_TO,
    }


def page_values(c: ReportContent, out_dir: Path) -> dict[str, Any]:
    """Everything report.html.j2 needs, as plain values (strings, numbers, lists, dicts)."""
    src = _Sources(out_dir)
    open_all = len(c.scenes) * len(c.variants) <= OPEN_UP_TO
    return {
        "text": text,
        "claims": _claims(c),
        "settings": text.settings_sentence(c),
        "legacy_sentence": text.legacy_sentence(c),
        "show_std": c.show_std,
        "results": _results(c),
        "paired_intro": text.paired_intro(c.baseline),
        "confidence": f"{CONFIDENCE:.0%}",
        "paired": _paired(c),
        "efficiency": _efficiency(c, src),
        "multiscale": multiscale.html_values(c.runs, c.scenes, c.variants),  # None without multiscale runs
        "plots": [src.image(rel, title, title, "plot") for title, rel in c.plots],
        "renders": _renders(c, src, open_all),
        "repro": _reproduction(c, src, open_all),
        "published": _published(c),
        "runs": _runs(c.runs),
    }


def _environment() -> Any:
    try:
        import jinja2
    except ImportError as exc:
        raise NerfpipeError("report.html needs the jinja2 package (pip install jinja2)") from exc
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def html(c: ReportContent, out_dir: Path) -> str:
    """The whole of report.html; `out_dir` is the report folder the media paths are relative to."""
    return _environment().get_template("report.html.j2").render(**page_values(c, out_dir))
