"""What the report says: everything report.md and report.html show (`ReportContent`), and the
sentences both documents share."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nerfpipe.reporting.efficiency import Efficiency
from nerfpipe.reporting.files import STRIP_VIEW
from nerfpipe.reporting.published import METHOD_OF, PublishedSection, Table
from nerfpipe.stats import CONFIDENCE

TITLE = "nerfpipe report"
LEGACY_SENTENCE = (
    "PSNR-SoftL1 is the legacy figure of the original implementation, −10·log10 of the mean SoftL1 "
    "loss √(e² + ε) rather than of the mean squared error; since √(e² + ε) ≥ |e| is far larger than "
    "e² for small errors, it sits several dB below the true PSNR and must not be compared with "
    "published numbers."
)
PAIRED_TITLE = "Paired comparison against the baseline"
REPRO_TITLE = "Reproducing the original's figures"
ABLATION_TITLE = "Distortion-regulariser ablation"
DISTILLATION_TITLE = "Proposal-network distillation"
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
NO_PROPOSAL_SENTENCE = "No proposal-based variant (mipnerf360, refnerf) is configured."
ORBITS_SENTENCE = "Orbit videos of every scene and variant are in the Renders section above."
STRIP_CAPTION = f"test view {STRIP_VIEW}: ground truth | prediction | error"
PUBLISHED_TITLE = "Published figures beside reproduced ones"
PUBLISHED_RUNS_SENTENCE = "The runs compared, with the hardware, iterations and wall time of their training:"
CLAIMS_TITLE = "Claims"
RESULTS_TITLE = "Results"  # a heading only when the claims section comes before the results
EFFICIENCY_TITLE = "Efficiency"
CLAIM_NOTES_SENTENCE = "Notes on the claims:"


@dataclass(frozen=True)
class RunMedia:
    """The copies of one run's media in the report folder (paths relative to it)."""

    seed: int
    strip: str  # evaluation strip of STRIP_VIEW (PNG)
    gifs: list[tuple[str, str]]  # (label, path): "orbit rgb", "orbit depth" and, if any, "orbit normal"
    mp4: str


@dataclass(frozen=True)
class ReportContent:
    """Everything the documents show; figures and media are paths relative to the report folder."""

    scenes: list[str]
    variants: list[str]
    seeds: list[int]
    baseline: str
    runs: pd.DataFrame  # collect.collect: one row per run
    table: pd.DataFrame  # tables.aggregate
    paired: pd.DataFrame  # tables.paired_table
    notes: dict[str, str]  # tables.footnotes
    plots: list[tuple[str, str]]  # (title, path)
    media: dict[tuple[str, str], RunMedia]  # (scene, variant) -> the first seed's media
    pairs: list[tuple[str, str]]  # (ablation, base)
    ablations: pd.DataFrame  # tables.ablation_table
    concentration: pd.DataFrame  # collect.concentration
    distillation: list[tuple[str, str, int, str]]  # (scene, variant, seed, path)
    published: PublishedSection | None = None  # published.published_section; None: no run matches
    claims: pd.DataFrame | None = None  # claims.claims_table; None or empty: no claims section
    efficiency: Efficiency | None = None  # efficiency.write_efficiency; None: no efficiency section

    @property
    def has_claims(self) -> bool:
        return self.claims is not None and len(self.claims) > 0

    @property
    def show_std(self) -> bool:
        """Cells are mean ± std when there are several seeds."""
        return len(self.seeds) > 1


def legacy_sentence(c: ReportContent) -> str:
    """LEGACY_SENTENCE plus the ε the runs used: each run's training-loss softl1_eps, so the
    legacy figure is the original implementation's `sqrt(e^2 + eps)` with the same eps."""
    values = sorted({float(v) for v in c.runs["softl1_eps"].dropna()}) if "softl1_eps" in c.runs else []
    shown = ", ".join(f"{v:g}" for v in values) or "not recorded"
    return (f"{LEGACY_SENTENCE} Its ε is the training loss's `softl1_eps` of each run "
            f"(here {shown}).")


def settings_sentence(c: ReportContent) -> str:
    return (
        f"Scenes: {', '.join(c.scenes)}. Variants: {', '.join(c.variants)} "
        f"(baseline: {c.baseline}). Seeds: {', '.join(map(str, c.seeds))}."
    )


def paired_intro(baseline: str) -> str:
    return (
        f"Differences are variant − {baseline} over matched (scene, seed) pairs, with a "
        f"{CONFIDENCE:.0%} confidence interval from the t distribution; a verdict needs the interval "
        "to exclude 0."
    )


def efficiency_intro(c: ReportContent) -> str:
    spread = (" Cells are mean ± std and the error bars span ± std, the std over seeds of the scene-averaged "
              "value (as in the mean rows of the results table)." if c.show_std else "")
    return (
        "mip-NeRF 360 (Barron et al. 2022) claims that proposal-network distillation gives equal quality "
        "at fewer MLP evaluations; this plots each variant's test PSNR (MSE-based) against the MLP "
        "evaluations per training ray and against the training wall time. MLP evals/ray is each run's "
        "`samples_per_ray` (summary.json; for the occupancy-grid estimator the measured mean), train time "
        "and rays/s are from summary.json and PSNR from metrics.json; every value is the mean over scenes "
        f"of the per-scene mean over seeds.{spread}"
    )


def claims_intro() -> str:
    return (
        "Each row is a paper's claim tested on these runs (declared in the config's `claims:`, computed "
        "by nerfpipe/reporting/claims.py). Difference = variant − comparator over matched (scene, seed) "
        f"pairs: mean and {CONFIDENCE:.0%} confidence interval from the t distribution. The claimed "
        "difference is > 0 (the variant's metric is higher) or < 0 (lower); for a non-inferiority claim "
        "(the variant is not worse by more than a margin) it is > -margin or < +margin. "
        "Reproduced: the interval lies entirely on the claimed side; not reproduced: entirely on the "
        "other side; inconclusive: it contains the threshold, there are fewer than 2 pairs, or the "
        "metric was not measured."
    )


def ablation_intro(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return "No ablation variants (variants with `base:`) are configured."
    names = ", ".join(f"{a} (base {b})" for a, b in pairs)
    return (
        f"Ablations: {names}. Each ablation variant changes only the listed settings of its base "
        "(read from the runs' config.json). Without the distortion regulariser (distortion_weight 0), "
        "mip-NeRF 360 (Figure 5) shows floaters and background collapse in the depth maps, and the weights "
        "along a ray spread out instead of concentrating at the surface. ΔPSNR and ΔSSIM are ablation − "
        "base, mean over matched seeds; the renders and weights are of the first seed."
    )


def published_intro() -> str:
    aliases = ", ".join(f"{m} is compared with {p}'s" for m, p in METHOD_OF.items() if m != p)
    return (
        "Each paper's published per-scene figure beside the reproduced one, for the runs whose dataset "
        "and scene the paper reports (the tables are shipped as data in nerfpipe/reporting/published.yaml; "
        f"{aliases} figures). Reproduced = mean over seeds; gap = reproduced − published, so a positive "
        "gap is better for PSNR and SSIM and worse for LPIPS and normal MAE. nerfpipe's LPIPS is the "
        "AlexNet variant and its normal MAE uses density-gradient normals weighted by opacity × "
        "ground-truth alpha, which need not match a paper's protocol (noted with each source below)."
    )


def source_sentence(table: Table) -> str:
    """One published table's source: method, paper, arXiv id, table and protocol."""
    s = table.source
    return (f"{table.method} on {table.dataset}: “{s['paper']}”, {s['authors']}, arXiv {s['arxiv']}, "
            f"{' '.join(str(s['table']).split())}. Protocol: {table.protocol}.")
