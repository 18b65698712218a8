"""The report folder's layout: the names of everything the report writes, relative to it.

The top-level entries are the layout's REPORT_FILES and REPORT_DIRS (what the workflow's report
rule declares) plus the STAGE_MARKER; every figure and media copy lies in figures/ or videos/.
"""

from __future__ import annotations

from nerfpipe.layout import REPORT_DIRS, REPORT_FILES, STAGE_MARKER

FIGURES, VIDEOS = REPORT_DIRS["figures"], REPORT_DIRS["videos"]
STAGE = "report"  # the stage named by the STAGE_MARKER in a report folder (nerfpipe.guard)
STRIP_VIEW = 0  # the test view shown as a comparison strip and in the ablation figures

PSNR_BARS = f"{FIGURES}/psnr_per_scene.png"
LEGACY_SCATTER = f"{FIGURES}/psnr_vs_legacy.png"


def report_entries() -> set[str]:
    """Names of the entries of a report folder: the declared outputs (REPORT_FILES and the folders
    REPORT_DIRS, as workflow/rules/report.smk declares them) and the STAGE_MARKER."""
    return {*REPORT_FILES.values(), *REPORT_DIRS.values(), STAGE_MARKER}


def run_stem(scene: str, variant: str, seed: int) -> str:
    return f"{scene}_{variant}_seed{seed}"


def training_curves(scene: str) -> str:
    return f"{FIGURES}/train_{scene}.png"


def strip(scene: str, variant: str, seed: int) -> str:
    return f"{FIGURES}/strip_{run_stem(scene, variant, seed)}.png"


def orbit_gif(kind: str, scene: str, variant: str, seed: int) -> str:
    return f"{FIGURES}/orbit_{kind}_{run_stem(scene, variant, seed)}.gif"


def orbit_mp4(scene: str, variant: str, seed: int) -> str:
    return f"{VIDEOS}/orbit_rgb_{run_stem(scene, variant, seed)}.mp4"


def ablation_figures(scene: str, ablation: str, base: str, seed: int) -> tuple[str, str]:
    """(renders and depth maps, NeRF weights along rays) of one ablation pair in one scene."""
    stem = f"{scene}_{ablation}_vs_{base}_seed{seed}"
    return f"{FIGURES}/ablation_views_{stem}.png", f"{FIGURES}/ablation_weights_{stem}.png"


def distillation(scene: str, variant: str, seed: int) -> str:
    return f"{FIGURES}/distillation_{run_stem(scene, variant, seed)}.png"
