"""Paired comparison: hand-computed t intervals, pairing by (scene, seed), coverage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from nerfpipe.stats import paired_comparison, t_interval

# Student t quantile t_{0.975, 3} from printed tables.
T_975_DF3 = 3.182446305284263


def _frame(values: dict[tuple[str, int, str], float]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"scene": s, "seed": seed, "variant": v, "psnr": x} for (s, seed, v), x in values.items()]
    )


BASE = {("a", 0): 20.0, ("a", 1): 21.0, ("b", 0): 25.0, ("b", 1): 24.0}
DIFFS = {("a", 0): 0.5, ("a", 1): 1.0, ("b", 0): 1.5, ("b", 1): 0.2}


def _fixture() -> pd.DataFrame:
    values = {}
    for key, x in BASE.items():
        values[(*key, "nerf")] = x
        values[(*key, "refnerf")] = x + DIFFS[key]
    return _frame(values)


def test_interval_matches_hand_computation():
    d = [0.5, 1.0, 1.5, 0.2]
    mean = sum(d) / 4  # 0.8
    var = sum((x - mean) ** 2 for x in d) / 3
    half = T_975_DF3 * math.sqrt(var) / 2.0
    df = _fixture().sample(frac=1.0, random_state=3)  # row order must not matter
    res = paired_comparison(df, "psnr", "nerf", "refnerf")
    assert res["n"] == 4
    assert res["mean_diff"] == pytest.approx(0.8)
    assert res["std_diff"] == pytest.approx(math.sqrt(var))
    assert res["ci_low"] == pytest.approx(mean - half, rel=1e-9)
    assert res["ci_high"] == pytest.approx(mean + half, rel=1e-9)
    assert sorted(res["pairs"]) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    ref = sps.ttest_rel([BASE[k] + DIFFS[k] for k in BASE], [BASE[k] for k in BASE])
    assert res["p_value"] == pytest.approx(ref.pvalue)
    # swapping the roles negates the difference and mirrors the interval
    rev = paired_comparison(df, "psnr", "refnerf", "nerf")
    assert rev["mean_diff"] == pytest.approx(-0.8)
    assert rev["ci_low"] == pytest.approx(-res["ci_high"])


def test_pairs_match_on_scene_and_seed_and_drop_missing():
    df = _fixture()
    # an unmatched run and a missing value: both must be left out of the pairs
    extra = pd.DataFrame(
        [
            {"scene": "c", "seed": 0, "variant": "refnerf", "psnr": 99.0},
            {"scene": "a", "seed": 2, "variant": "nerf", "psnr": 10.0},
            {"scene": "a", "seed": 2, "variant": "refnerf", "psnr": None},
        ]
    )
    res = paired_comparison(pd.concat([df, extra]), "psnr", "nerf", "refnerf")
    assert res["n"] == 4
    assert res["mean_diff"] == pytest.approx(0.8)


def test_too_few_pairs_and_errors():
    df = _fixture()
    one = df[(df["scene"] == "a") & (df["seed"] == 0)]
    res = paired_comparison(one, "psnr", "nerf", "refnerf")
    assert res["n"] == 1 and res["mean_diff"] == pytest.approx(0.5)
    assert math.isnan(res["ci_low"]) and math.isnan(res["ci_high"])
    with pytest.raises(ValueError, match="lpips"):
        paired_comparison(df, "lpips", "nerf", "refnerf")
    with pytest.raises(ValueError, match="duplicate"):
        paired_comparison(pd.concat([df, df]), "psnr", "nerf", "refnerf")


def test_interval_coverage_monte_carlo():
    rng = np.random.default_rng(0)
    trials, n, mu = 4000, 5, 0.3
    covered = 0
    for _ in range(trials):
        _, low, high = t_interval(rng.normal(mu, 1.0, n))
        covered += low <= mu <= high
    # binomial sd at p = 0.95 over 4000 trials is 0.0034
    assert abs(covered / trials - 0.95) < 0.015
