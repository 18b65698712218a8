"""The report's claims section: papers' claims tested on the runs, never written by hand.

A claim (config `claims:`, carried by the manifest) names a metric, a variant, the comparator it
is measured against, the scenes (default: all) and the claimed direction:

    {"id": "refnerf_glossy_psnr", "paper": "Ref-NeRF (Verbin et al., CVPR 2022)",
     "claim": "Ref-NeRF renders glossy surfaces more accurately than mip-NeRF 360.",
     "metric": "psnr", "variant": "refnerf", "comparator": "mipnerf360",
     "scenes": ["mirror"], "direction": "higher"}

plus, optionally, `margin` (a non-inferiority claim: the variant is not worse than the comparator
by more than `margin`, in the metric's units) and `note` (a caveat shown with the claim).

`claims_table` pairs the runs on (scene, seed), takes difference = variant − comparator, its mean
and 95% t interval (nerfpipe.stats) and a verdict (`verdict`):

    reproduced       the interval lies entirely on the claimed side of the threshold
    not reproduced   it lies entirely on the other side
    inconclusive     it contains the threshold, or there are fewer than 2 pairs, or the
                     metric was not measured

The threshold is 0, or −margin / +margin for a non-inferiority claim whose direction is
higher / lower. Everything here is a pure function of the runs (`collect.collect`'s frame).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from nerfpipe.errors import NerfpipeError
from nerfpipe.layout import NAME_RE
from nerfpipe.stats import CONFIDENCE, paired_comparison

DIRECTIONS = ("higher", "lower")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
REQUIRED_KEYS = ("id", "paper", "claim", "metric", "variant", "comparator", "direction")
OPTIONAL_KEYS = ("scenes", "margin", "note")
NOT_MEASURED = "metric not measured"
COLUMNS = (
    "id", "paper", "claim", "metric", "variant", "comparator", "scenes", "direction", "margin",
    "threshold", "n", "mean_diff", "std_diff", "ci_low", "ci_high", "confidence", "verdict", "reason",
    "note",
)
# Decimals of a difference per metric (others: DEFAULT_DIGITS).
DIGITS = {"psnr": 3, "psnr_softl1": 3, "ssim": 4, "lpips": 4, "normal_mae_deg": 2, "samples_per_ray": 1,
          "train_seconds": 1, "rays_per_second": 0, "floater_fraction": 4, "depth_mae": 4}
DEFAULT_DIGITS = 3


# ---------------------------------------------------------------------------- the declarations


def check_claims(value: Any, variants: list[str], scenes: list[str], where: str) -> list[dict[str, Any]]:
    """Claims (a list of objects, see the module doc) checked against the report's variants and
    scenes; a NerfpipeError naming `where`, the claim's index and id on any problem."""
    if not isinstance(value, list):
        raise NerfpipeError(f"{where}: expected a list of claim objects, got {type(value).__name__}")
    out, ids = [], set()
    for i, claim in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(claim, dict):
            raise NerfpipeError(f"{at}: expected a claim object, got {type(claim).__name__}")
        if isinstance(claim.get("id"), str):
            at = f"{at} ({claim['id']})"
        missing = [k for k in REQUIRED_KEYS if k not in claim]
        unknown = [str(k) for k in claim if k not in (*REQUIRED_KEYS, *OPTIONAL_KEYS)]
        if missing or unknown:
            what = (f"missing key(s) {', '.join(missing)}" if missing
                    else f"unknown key(s) {', '.join(unknown)}")
            raise NerfpipeError(f"{at}: {what} (allowed: {', '.join((*REQUIRED_KEYS, *OPTIONAL_KEYS))})")
        for key in REQUIRED_KEYS:
            if not isinstance(claim[key], str) or not claim[key].strip():
                raise NerfpipeError(f"{at}.{key}: expected a non-empty string, got {claim[key]!r}")
        for key in ("id", "metric"):
            if not NAME_RE.match(claim[key]):
                raise NerfpipeError(f"{at}.{key}: {claim[key]!r} is not a name (letters, digits, underscore)")
        if claim["id"] in ids:
            raise NerfpipeError(f"{at}.id: {claim['id']!r} names an earlier claim too")
        ids.add(claim["id"])
        for role in ("variant", "comparator"):
            if claim[role] not in variants:
                raise NerfpipeError(f"{at}.{role}: {claim[role]!r} is not one of the variants {variants}")
        if claim["variant"] == claim["comparator"]:
            raise NerfpipeError(f"{at}: variant and comparator are both {claim['variant']!r}")
        if claim["direction"] not in DIRECTIONS:
            raise NerfpipeError(f"{at}.direction: {claim['direction']!r} is not one of {list(DIRECTIONS)}")
        picked = claim.get("scenes", scenes)
        if not isinstance(picked, list) or not picked or len(set(map(str, picked))) != len(picked):
            raise NerfpipeError(f"{at}.scenes: expected a non-empty list of distinct scenes, got {picked!r}")
        for scene in picked:
            if scene not in scenes:
                raise NerfpipeError(f"{at}.scenes: {scene!r} is not one of the scenes {scenes}")
        margin = claim.get("margin", 0.0)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < math.inf:
            raise NerfpipeError(f"{at}.margin: expected a finite number >= 0, got {margin!r}")
        if not isinstance(claim.get("note", ""), str):
            raise NerfpipeError(f"{at}.note: expected a string, got {claim['note']!r}")
        out.append(dict(claim))
    return out


def claim_scenes(claim: dict[str, Any], scenes: list[str]) -> list[str]:
    """The scenes a claim is tested on: its `scenes`, else every scene of the report."""
    return list(claim.get("scenes") or scenes)


def threshold(direction: str, margin: float | None) -> float:
    """The difference the interval must clear: 0, or −margin (higher) / +margin (lower)."""
    margin = float(margin or 0.0)
    return -margin if direction == "higher" else margin


# ---------------------------------------------------------------------------- the verdict


def verdict(direction: str, n: int, ci_low: float, ci_high: float,
            margin: float | None = None) -> tuple[str, str]:
    """(verdict, reason) of a claim whose paired differences variant − comparator have the
    interval [ci_low, ci_high] over `n` pairs.

    direction "higher": the claim is that the difference is above the threshold (0, or −margin for
    a non-inferiority claim); "lower": below it (0, or +margin). Reproduced when the whole interval
    is on the claimed side, not reproduced when the whole interval is on the other side,
    inconclusive when it contains the threshold (an end point equal to it counts as contained) or
    when n < 2 (no interval).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"verdict: direction {direction!r} is not one of {DIRECTIONS}")
    if n < 2 or math.isnan(ci_low) or math.isnan(ci_high):
        pairs = "no pairs" if n == 0 else f"{n} pair"
        return INCONCLUSIVE, f"{pairs}; an interval needs at least 2"
    bound = threshold(direction, margin)
    where = fmt_threshold(bound, margin)
    above, below = ci_low > bound, ci_high < bound
    if not (above or below):
        return INCONCLUSIVE, f"CI contains {where}"
    claimed = above if direction == "higher" else below
    return (REPRODUCED if claimed else NOT_REPRODUCED), f"CI {'above' if above else 'below'} {where}"


def fmt_threshold(bound: float, margin: float | None) -> str:
    """0, or the margin's threshold as a signed number with `(margin)`: `-0.5 (margin)`."""
    return f"{bound:+g} (margin)" if margin else "0"


def evaluate_claim(runs: pd.DataFrame, claim: dict[str, Any], scenes: list[str],
                   confidence: float = CONFIDENCE) -> dict[str, Any]:
    """One row of the claims table (COLUMNS): the claim's paired comparison on its scenes and
    its verdict. A metric no run records (no such column, or no value for the variant's or the
    comparator's runs on these scenes) is inconclusive with the reason NOT_MEASURED."""
    picked = claim_scenes(claim, scenes)
    margin = float(claim.get("margin", 0.0))
    row: dict[str, Any] = {
        **{k: " ".join(str(claim[k]).split()) for k in REQUIRED_KEYS}, "scenes": picked, "margin": margin,
        "threshold": threshold(claim["direction"], margin), "n": 0, "mean_diff": math.nan,
        "std_diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "confidence": confidence,
        "note": " ".join(str(claim.get("note", "")).split()),
    }
    metric = claim["metric"]
    if metric not in runs.columns:
        return {**row, "verdict": INCONCLUSIVE, "reason": f"{NOT_MEASURED} (no run records {metric})"}
    sub = runs[runs["scene"].isin(picked)]
    for role in ("variant", "comparator"):
        values = pd.to_numeric(sub.loc[sub["variant"] == claim[role], metric], errors="coerce")
        if not values.notna().any():
            return {**row, "verdict": INCONCLUSIVE, "reason": f"{NOT_MEASURED} for {claim[role]}"}
    res = paired_comparison(sub, metric, claim["comparator"], claim["variant"], confidence)
    row.update({k: res[k] for k in ("n", "mean_diff", "std_diff", "ci_low", "ci_high")})
    row["verdict"], row["reason"] = verdict(claim["direction"], res["n"], res["ci_low"], res["ci_high"],
                                            margin)
    if res["n"] >= 2 and res["std_diff"] == 0.0:
        row["reason"] += "; every pair differs by the same amount"
    return row


def claims_table(runs: pd.DataFrame, claims: list[dict[str, Any]], scenes: list[str],
                 confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per claim (COLUMNS), in the claims' order; empty (with COLUMNS) for no claims."""
    rows = [evaluate_claim(runs, claim, scenes, confidence) for claim in claims]
    return pd.DataFrame(rows, columns=list(COLUMNS))


# ---------------------------------------------------------------------------- cell text


def digits(metric: str) -> int:
    return DIGITS.get(metric, DEFAULT_DIGITS)


def claimed_text(row: pd.Series | dict[str, Any]) -> str:
    """What the claim says of the difference variant − comparator: `> 0`, `< 0`, `> -0.5`, ..."""
    sign = ">" if row["direction"] == "higher" else "<"
    return f"{sign} {row['threshold']:+g}" if row["margin"] else f"{sign} 0"


def compared_text(row: pd.Series | dict[str, Any]) -> str:
    return f"{row['variant']} − {row['comparator']}"


def number_cells(row: pd.Series | dict[str, Any]) -> tuple[str, str]:
    """(mean difference, CI) as text: signed, with the metric's decimals; `n/a` when missing."""
    n_digits = digits(row["metric"])

    def fmt(value: float) -> str:
        return "n/a" if value is None or np.isnan(value) else f"{value:+.{n_digits}f}"

    mean = fmt(row["mean_diff"])
    if np.isnan(row["ci_low"]):
        return mean, "n/a"
    return mean, f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"
