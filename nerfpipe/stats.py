"""Seed statistics: paired comparisons of a variant against a baseline.

Runs are paired on (scene, seed): both variants saw the same scene and the same seed, so
the per-pair difference removes the scene's difficulty and most of the seed's luck, and
the t interval of the mean difference answers "does the variant beat the baseline?".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

CONFIDENCE = 0.95
PAIR_KEYS = ("scene", "seed")


def t_interval(diffs: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of `diffs` and its two-sided t confidence interval.

    diffs: [n] paired differences. Returns (mean, low, high); low/high are NaN for n < 2.
    Interval: mean ± t_{(1+c)/2, n-1} · s / sqrt(n), s the sample standard deviation (ddof=1).
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    n = diffs.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(diffs.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1)) * float(diffs.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_comparison(
    df: pd.DataFrame, metric: str, baseline: str, variant: str, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Mean difference `variant - baseline` of `metric` over matched (scene, seed) pairs.

    df: one row per run with columns scene, variant, seed and `metric`. Pairs where either
    value is missing (NaN/None) are dropped. Returns {"metric", "baseline", "variant", "n",
    "mean_diff", "std_diff", "ci_low", "ci_high", "confidence", "p_value", "pairs"}; the
    interval uses the t distribution with n - 1 degrees of freedom (NaN when n < 2).
    """
    for col in (*PAIR_KEYS, "variant", metric):
        if col not in df.columns:
            raise ValueError(f"paired_comparison: column {col!r} missing (have {list(df.columns)})")

    def side(name: str) -> pd.Series:
        sub = df[df["variant"] == name]
        if sub.duplicated(list(PAIR_KEYS)).any():
            raise ValueError(f"paired_comparison: variant {name!r} has duplicate (scene, seed) rows")
        return pd.to_numeric(sub.set_index(list(PAIR_KEYS))[metric], errors="coerce")

    base, var = side(baseline), side(variant)
    joined = pd.concat({"base": base, "var": var}, axis=1, join="inner").dropna().sort_index()
    diffs = (joined["var"] - joined["base"]).to_numpy(dtype=np.float64)
    mean, low, high = t_interval(diffs, confidence)
    n = int(diffs.size)
    std = float(diffs.std(ddof=1)) if n >= 2 else math.nan
    if n < 2:
        p_value = math.nan
    elif std == 0.0:
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        t_stat = mean / (std / math.sqrt(n))
        p_value = float(2.0 * sps.t.sf(abs(t_stat), n - 1))
    return {
        "metric": metric,
        "baseline": baseline,
        "variant": variant,
        "n": n,
        "mean_diff": mean,
        "std_diff": std,
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "p_value": p_value,
        "pairs": [tuple(k) for k in joined.index.tolist()],
    }
