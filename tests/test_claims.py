"""The report's claims section: verdicts on fixtures, the section in report.md / report.html, the
claims in the config and the manifest, and config/claims.yaml (nerfpipe.reporting.claims)."""

from __future__ import annotations

import copy
import json
import math
import re
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from nerfpipe.config import load_config, resolve_scene, validate_config
from nerfpipe.errors import NerfpipeError
from nerfpipe.reporting import (
    check_manifest,
    manifest_from_config,
    manifest_from_inputs,
    manifest_from_results,
)
from nerfpipe.reporting.claims import (
    COLUMNS,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    check_claims,
    claimed_text,
    claims_table,
    evaluate_claim,
    verdict,
)
from nerfpipe.stages.report import build_report
from nerfpipe.stats import t_interval
from tests.test_report import SCENES, SEEDS, VARIANTS, build_tree, fixture_values
from tests.test_workflow import SNAKEMAKE, dry_run, planned_jobs, run_jobs, snakemake, stub_bin  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
CLAIMS_YAML = REPO / "config" / "claims.yaml"


# ---------------------------------------------------------------------------- the verdict


@pytest.mark.parametrize(
    ("direction", "low", "high", "margin", "expected", "reason"),
    [
        # superiority, higher is claimed (PSNR, SSIM)
        ("higher", 0.1, 0.5, None, REPRODUCED, "CI above 0"),
        ("higher", -0.5, -0.1, None, NOT_REPRODUCED, "CI below 0"),
        ("higher", -0.1, 0.3, None, INCONCLUSIVE, "CI contains 0"),
        ("higher", 0.0, 0.3, None, INCONCLUSIVE, "CI contains 0"),  # an end point on 0 is contained
        # superiority, lower is claimed (normal MAE, LPIPS, samples per ray)
        ("lower", -0.5, -0.1, None, REPRODUCED, "CI below 0"),
        ("lower", 0.1, 0.5, None, NOT_REPRODUCED, "CI above 0"),
        ("lower", -0.3, 0.1, None, INCONCLUSIVE, "CI contains 0"),
        ("lower", -0.3, 0.0, None, INCONCLUSIVE, "CI contains 0"),
        # a margin of 0 is the superiority test
        ("higher", 0.1, 0.5, 0.0, REPRODUCED, "CI above 0"),
        # non-inferiority, higher is better: the difference must stay above -margin
        ("higher", -0.3, 0.2, 0.5, REPRODUCED, "CI above -0.5 (margin)"),
        ("higher", 0.1, 0.4, 0.5, REPRODUCED, "CI above -0.5 (margin)"),
        ("higher", -0.9, -0.6, 0.5, NOT_REPRODUCED, "CI below -0.5 (margin)"),
        ("higher", -0.7, -0.2, 0.5, INCONCLUSIVE, "CI contains -0.5 (margin)"),
        # non-inferiority, lower is better: the difference must stay below +margin
        ("lower", -1.0, 1.5, 2.0, REPRODUCED, "CI below +2 (margin)"),
        ("lower", 2.5, 3.0, 2.0, NOT_REPRODUCED, "CI above +2 (margin)"),
        ("lower", 1.0, 3.0, 2.0, INCONCLUSIVE, "CI contains +2 (margin)"),
    ],
)
def test_verdict_from_the_interval(direction, low, high, margin, expected, reason):
    assert verdict(direction, 6, low, high, margin) == (expected, reason)


@pytest.mark.parametrize(("n", "reason"), [(0, "no pairs"), (1, "1 pair")])
def test_fewer_than_two_pairs_is_inconclusive(n, reason):
    got, why = verdict("higher", n, math.nan, math.nan)
    assert got == INCONCLUSIVE and why.startswith(reason) and "at least 2" in why
    # even with an interval given, one pair is not evidence
    assert verdict("lower", 1, -2.0, -1.0)[0] == INCONCLUSIVE


def test_unknown_direction_is_an_error():
    with pytest.raises(ValueError, match="direction"):
        verdict("up", 5, 0.1, 0.2)


def test_claimed_difference_text():
    rows = [("higher", 0.0, 0.0, "> 0"), ("lower", 0.0, 0.0, "< 0"), ("higher", 0.5, -0.5, "> -0.5"),
            ("lower", 2.0, 2.0, "< +2")]
    for direction, margin, bound, text in rows:
        assert claimed_text({"direction": direction, "margin": margin, "threshold": bound}) == text


# ---------------------------------------------------------------------------- claims on runs


def runs_frame(values: dict[str, dict[tuple[str, int], float]], metric: str = "psnr") -> pd.DataFrame:
    """A runs frame (collect.collect's columns that matter): variant -> {(scene, seed): value}."""
    rows = [{"scene": scene, "variant": variant, "seed": seed, metric: value}
            for variant, by_run in values.items() for (scene, seed), value in by_run.items()]
    return pd.DataFrame(rows)


def claim(**kw) -> dict:
    base = {"id": "c", "paper": "P", "claim": "A beats B.", "metric": "psnr", "variant": "a",
            "comparator": "b", "direction": "higher"}
    return {**base, **kw}


PAIRS = [(scene, seed) for scene in ("s1", "s2") for seed in (0, 1, 2)]
B = {run: 20.0 + 2.0 * i for i, run in enumerate(PAIRS)}


def shifted(deltas: list[float]) -> dict:
    return {run: B[run] + d for run, d in zip(PAIRS, deltas, strict=True)}


@pytest.mark.parametrize(
    ("deltas", "direction", "margin", "expected"),
    [
        ([0.8, 1.1, 0.9, 1.3, 1.0, 0.7], "higher", None, REPRODUCED),
        ([-0.8, -1.1, -0.9, -1.3, -1.0, -0.7], "higher", None, NOT_REPRODUCED),
        ([0.5, -0.4, 0.2, -0.3, 0.1, -0.2], "higher", None, INCONCLUSIVE),
        ([-0.8, -1.1, -0.9, -1.3, -1.0, -0.7], "lower", None, REPRODUCED),
        ([0.8, 1.1, 0.9, 1.3, 1.0, 0.7], "lower", None, NOT_REPRODUCED),
        ([-0.1, 0.1, -0.2, 0.0, 0.05, -0.05], "higher", 0.5, REPRODUCED),
        ([-1.1, -0.9, -1.2, -1.0, -0.8, -1.05], "higher", 0.5, NOT_REPRODUCED),
        ([-0.1, -0.9, -0.2, -0.7, 0.1, -0.6], "higher", 0.5, INCONCLUSIVE),
        ([0.1, -0.1, 0.2, 0.0, -0.05, 0.05], "lower", 0.5, REPRODUCED),
        ([1.1, 0.9, 1.2, 1.0, 0.8, 1.05], "lower", 0.5, NOT_REPRODUCED),
    ],
)
def test_claim_on_runs_matches_the_hand_computed_interval(deltas, direction, margin, expected):
    runs = runs_frame({"a": shifted(deltas), "b": B})
    spec = claim(direction=direction, **({} if margin is None else {"margin": margin}))
    row = evaluate_claim(runs, spec, ["s1", "s2"])
    mean, low, high = t_interval(np.array(deltas))
    assert row["n"] == 6
    assert row["mean_diff"] == pytest.approx(mean)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["verdict"] == expected, row["reason"]
    assert row["verdict"] == verdict(direction, 6, low, high, margin)[0]


def test_claim_uses_only_its_scenes():
    deltas = [1.0, 1.2, 0.9, -5.0, -4.0, -6.0]  # better on s1, much worse on s2
    runs = runs_frame({"a": shifted(deltas), "b": B})
    on_s1 = evaluate_claim(runs, claim(scenes=["s1"]), ["s1", "s2"])
    assert on_s1["n"] == 3 and on_s1["scenes"] == ["s1"] and on_s1["verdict"] == REPRODUCED
    both = evaluate_claim(runs, claim(), ["s1", "s2"])
    assert both["n"] == 6 and both["scenes"] == ["s1", "s2"] and both["verdict"] == INCONCLUSIVE


def test_lower_is_better_metric():
    mae = {"a": {run: 30.0 - 3.0 - 0.1 * i for i, run in enumerate(PAIRS)},
           "b": {run: 30.0 + 0.2 * (i % 2) for i, run in enumerate(PAIRS)}}
    runs = runs_frame(mae, "normal_mae_deg")
    row = evaluate_claim(runs, claim(metric="normal_mae_deg", direction="lower"), ["s1", "s2"])
    assert row["mean_diff"] < 0 and row["verdict"] == REPRODUCED and row["reason"] == "CI below 0"
    row = evaluate_claim(runs, claim(metric="normal_mae_deg", direction="higher"), ["s1", "s2"])
    assert row["verdict"] == NOT_REPRODUCED


def test_identical_differences_give_a_verdict_and_say_so():
    runs = runs_frame({"a": {run: 64 for run in PAIRS}, "b": {run: 96 for run in PAIRS}}, "samples_per_ray")
    row = evaluate_claim(runs, claim(metric="samples_per_ray", direction="lower"), ["s1", "s2"])
    assert (row["mean_diff"], row["ci_low"], row["ci_high"]) == (-32, -32, -32)
    assert row["verdict"] == REPRODUCED
    assert row["reason"] == "CI below 0; every pair differs by the same amount"


def test_metric_not_measured():
    runs = runs_frame({"a": shifted([1.0] * 6), "b": B})
    row = evaluate_claim(runs, claim(metric="floater_fraction", direction="lower"), ["s1", "s2"])
    assert row["verdict"] == INCONCLUSIVE and row["n"] == 0
    assert row["reason"] == "metric not measured (no run records floater_fraction)"
    runs["normal_mae_deg"] = np.where(runs["variant"] == "b", np.nan, 20.0)  # like NeRF: no normals
    row = evaluate_claim(runs, claim(metric="normal_mae_deg", direction="lower"), ["s1", "s2"])
    assert row["verdict"] == INCONCLUSIVE and row["reason"] == "metric not measured for b"


def test_one_pair_is_inconclusive():
    runs = runs_frame({"a": {("s1", 0): 30.0}, "b": {("s1", 0): 20.0}})
    row = evaluate_claim(runs, claim(), ["s1"])
    assert row["n"] == 1 and row["verdict"] == INCONCLUSIVE and "at least 2" in row["reason"]


def test_claims_table_has_one_row_per_claim_in_order():
    runs = runs_frame({"a": shifted([1.0, 1.2, 0.9, 1.1, 1.0, 0.8]), "b": B})
    table = claims_table(runs, [claim(id="x"), claim(id="y", direction="lower")], ["s1", "s2"])
    assert list(table.columns) == list(COLUMNS)
    assert list(table["id"]) == ["x", "y"] and list(table["verdict"]) == [REPRODUCED, NOT_REPRODUCED]
    empty = claims_table(runs, [], ["s1", "s2"])
    assert empty.empty and list(empty.columns) == list(COLUMNS)


# ---------------------------------------------------------------------------- checks of the declarations


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"variant": "c"}, r"claims\[0\] \(c\)\.variant: 'c' is not one of the variants"),
        ({"comparator": "mip"}, r"claims\[0\] \(c\)\.comparator: 'mip' is not one of the variants"),
        ({"scenes": ["s3"]}, r"claims\[0\] \(c\)\.scenes: 's3' is not one of the scenes"),
        ({"comparator": "a"}, r"claims\[0\] \(c\): variant and comparator are both 'a'"),
        ({"direction": "up"}, r"claims\[0\] \(c\)\.direction: 'up'"),
        ({"margin": -1}, r"claims\[0\] \(c\)\.margin: expected a finite number >= 0"),
        ({"metric": "../x"}, r"claims\[0\] \(c\)\.metric: '../x' is not a name"),
        ({"extra": 1}, r"claims\[0\] \(c\): unknown key\(s\) extra"),
    ],
)
def test_check_claims_names_the_claim(edit, expected):
    with pytest.raises(NerfpipeError, match=expected):
        check_claims([claim(**edit)], ["a", "b"], ["s1", "s2"], "m.json: claims")


def test_check_claims_rejects_a_repeated_id_and_a_missing_key():
    with pytest.raises(NerfpipeError, match=r"claims\[1\] \(c\)\.id: 'c' names an earlier claim"):
        check_claims([claim(), claim()], ["a", "b"], ["s1"], "claims")
    spec = claim()
    del spec["direction"]
    with pytest.raises(NerfpipeError, match=r"claims\[0\] \(c\): missing key\(s\) direction"):
        check_claims([spec], ["a", "b"], ["s1"], "claims")


def minimal_config(claims: list[dict]) -> dict:
    return {"scenes": {"s1": {"synthetic": "diffuse"}, "s2": {"synthetic": "glossy"}},
            "variants": {"a": {"method": "nerf"}, "b": {"method": "mipnerf"}}, "report": {"baseline": "a"},
            "claims": claims}


def config_error(claims: list[dict]) -> str:
    with pytest.raises(NerfpipeError) as info:
        validate_config(minimal_config(claims), source="test.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"variant": "refnef"}, "test.yaml: claims.0 (c): variant 'refnef' is not a configured variant; "
                                "known variants: a, b"),
        ({"comparator": "x"}, "test.yaml: claims.0 (c): comparator 'x' is not a configured variant"),
        ({"scenes": ["s1", "lego"]}, "test.yaml: claims.0 (c): scenes: 'lego' is not a configured scene; "
                                     "known scenes: s1, s2"),
        ({"comparator": "a"}, "test.yaml: claims.0 (c): variant and comparator are both 'a'"),
    ],
)
def test_config_cross_check_names_the_claim(edit, expected):
    assert expected in config_error([claim(**edit)])


def test_config_schema_checks_each_claim():
    assert "claims.1 (c): id 'c' names an earlier claim too" in config_error([claim(), claim()])
    spec = claim()
    del spec["direction"]
    assert "claims.0: 'direction' is a required property" in config_error([spec])
    expected = "claims.0.direction: 'up' is not one of ['higher', 'lower']"
    assert expected in config_error([claim(direction="up")])
    assert "claims.0.margin: -0.5 is less than the minimum of 0" in config_error([claim(margin=-0.5)])
    assert "claims.0: unknown key 'sceens' (did you mean 'scenes'?)" in config_error([claim(sceens=["s1"])])


def test_config_without_claims_has_none():
    cfg = validate_config({k: v for k, v in minimal_config([]).items() if k != "claims"})
    assert cfg["claims"] == []
    assert "claims" not in manifest_from_config(cfg, "results")


def test_the_manifest_carries_the_claims(tmp_path):
    cfg = validate_config(minimal_config([claim(scenes=["s2"]), claim(id="d", margin=0.5)]))
    m = manifest_from_config(cfg, tmp_path)
    assert m["claims"] == cfg["claims"] and list(m)[-1] == "runs"
    assert check_manifest(m, "m.json").claims == cfg["claims"]
    # the workflow's report_manifest rule: the claims come as JSON in its params
    settings = {k: m[k] for k in ("scenes", "variants", "seeds", "baseline", "ablations")}
    inputs = {key: [r[key] for r in m["runs"]] for key in m["runs"][0]
              if key not in ("scene", "variant", "seed")}
    assert manifest_from_inputs(settings, inputs, json.dumps(cfg["claims"])) == m
    assert "claims" not in manifest_from_inputs(settings, inputs, "[]")
    bad = copy.deepcopy(m)
    bad["claims"][1]["variant"] = "zz"
    with pytest.raises(NerfpipeError, match=r"m\.json: claims\[1\] \(d\)\.variant: 'zz'"):
        check_manifest(bad, "m.json")


# ---------------------------------------------------------------------------- the section in the report

FIXTURE_CLAIMS = [
    claim(id="refnerf_psnr", paper="Ref-NeRF", claim="Ref-NeRF beats NeRF.", variant="refnerf",
          comparator="nerf"),
    claim(id="lpips", metric="lpips", variant="mipnerf", comparator="nerf", direction="lower"),
    claim(id="normals_same", metric="normal_mae_deg", variant="refnerf", comparator="mipnerf",
          direction="lower", note="Both fixtures have the same normal error."),
    claim(id="train_time", metric="train_seconds", variant="nerf", comparator="refnerf", direction="lower",
          scenes=["lego"]),
    claim(id="non_inferior", variant="mipnerf", comparator="refnerf", scenes=["shiny"], margin=0.5),
    claim(id="floaters", metric="floater_fraction", variant="mipnerf", comparator="nerf", direction="lower"),
    claim(id="nerf_normals", metric="normal_mae_deg", variant="mipnerf", comparator="nerf",
          direction="lower"),
]
FIXTURE_VERDICTS = {
    "lpips": (REPRODUCED, "CI below 0"),  # every pair -0.05 (up to rounding)
    "normals_same": (INCONCLUSIVE, "CI contains 0; every pair differs by the same amount"),
    "train_time": (REPRODUCED, "CI below 0; every pair differs by the same amount"),
    "non_inferior": (NOT_REPRODUCED, "CI below -0.5 (margin)"),
    "floaters": (INCONCLUSIVE, "metric not measured (no run records floater_fraction)"),
    "nerf_normals": (INCONCLUSIVE, "metric not measured for nerf"),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The fixture runs of tests/test_report.py reported with FIXTURE_CLAIMS and without claims."""
    root = tmp_path_factory.mktemp("claims_report")
    results = build_tree(root)
    outs = {}
    for name, claims in (("with", FIXTURE_CLAIMS), ("without", None)):
        manifest = manifest_from_results(results, SCENES, VARIANTS, SEEDS, "nerf", claims=claims)
        build_report(manifest, root / name)
        outs[name] = root / name
    return outs


def test_section_rows_and_verdicts(reports):
    md = (reports["with"] / "report.md").read_text()
    assert md.startswith("# nerfpipe report\n\n## Claims\n\n")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in md.splitlines()
            if line.startswith("| ") and line.split(" | ")[0][2:] in {c["id"] for c in FIXTURE_CLAIMS}}
    assert list(rows) == [c["id"] for c in FIXTURE_CLAIMS]
    for cid, (expected, reason) in FIXTURE_VERDICTS.items():
        assert rows[cid][-2] == f"**{expected}**" and rows[cid][-1].startswith(reason), rows[cid]
    diffs = [fixture_values(sc, "refnerf", s)["psnr"] - fixture_values(sc, "nerf", s)["psnr"]
             for sc in SCENES for s in SEEDS]
    mean, low, high = t_interval(np.array(diffs))
    row = rows["refnerf_psnr"]
    ci = f"[{low:+.3f}, {high:+.3f}]"
    assert row[4:10] == ["refnerf − nerf", "lego, shiny", "> 0", "6", f"{mean:+.3f}", ci]
    assert row[-2] == f"**{verdict('higher', 6, low, high)[0]}**"
    assert rows["non_inferior"][6:8] == ["> -0.5", "3"]
    assert "- normals_same: Both fixtures have the same normal error." in md


def test_section_is_first_and_leaves_the_rest_unchanged(reports):
    with_claims = (reports["with"] / "report.md").read_text()
    without = (reports["without"] / "report.md").read_text()
    assert "## Claims" not in without and "## Results" not in without
    head, rest = with_claims.split("\n## Results\n\n", 1)
    assert head.startswith("# nerfpipe report\n\n## Claims\n") and "## " not in head.split("## Claims", 1)[1]
    assert "# nerfpipe report\n\n" + rest == without
    for name in ("report.csv", "runs.csv", "paired.csv"):
        assert (reports["with"] / name).read_text() == (reports["without"] / name).read_text()


def test_html_section(reports):
    page = (reports["with"] / "report.html").read_text()
    assert page.index('<h2 id="claims">Claims</h2>') < page.index('<table id="results"')
    assert '<a href="#claims">Claims</a> · <a href="#results">Results</a>' in page
    table = re.search(r'<table id="claims-table".*?</table>', page, re.S).group(0)
    assert table.count("<tr>") == len(FIXTURE_CLAIMS) + 1
    assert "<td><strong>not reproduced</strong></td><td>CI below -0.5 (margin)</td>" in table
    assert "<li>normals_same: Both fixtures have the same normal error.</li>" in page
    plain = (reports["without"] / "report.html").read_text()
    assert 'id="claims' not in plain and "#claims" not in plain


# ---------------------------------------------------------------------------- config/claims.yaml


def test_claims_config_is_valid():
    cfg = load_config(CLAIMS_YAML)
    assert cfg["seeds"] == [0, 1, 2]
    ids = [c["id"] for c in cfg["claims"]]
    assert ids == ["refnerf_glossy_psnr", "refnerf_glossy_normals", "mipnerf360_distortion_floaters",
                   "mipnerf360_fewer_samples", "mipnerf360_equal_quality", "mipnerf_single_scale",
                   "mipnerf_multiscale_psnr", "mipnerf_multiscale_psnr_eighth"]
    used = {v for c in cfg["claims"] for v in (c["variant"], c["comparator"])}
    assert used == set(cfg["variants"])  # every variant trained is compared by some claim
    by_id = {c["id"]: c for c in cfg["claims"]}
    assert by_id["mipnerf360_equal_quality"]["margin"] == 0.5
    assert cfg["scenes"]["mirror"] == {"synthetic": "mirror"}
    assert cfg["scenes"]["diffuse_few"]["n_train"] <= 6
    # the multiscale claims read only the multiscale scene, the single-scale ones only the others
    multiscale = {name for name in cfg["scenes"] if resolve_scene(cfg, name).get("multiscale")}
    assert len(multiscale) == 1
    for c in cfg["claims"]:
        if c["id"].startswith("mipnerf_multiscale"):
            assert c["scenes"] == sorted(multiscale)
        elif c["metric"] in ("psnr", "normal_mae_deg"):
            assert not multiscale & set(c["scenes"]), c["id"]
    assert check_manifest(manifest_from_config(cfg), "claims").claims == cfg["claims"]


@pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")
def test_claims_config_dry_run_plans_every_run(tmp_path):
    cfg = load_config(CLAIMS_YAML)
    jobs = dry_run(tmp_path, CLAIMS_YAML)
    expected = run_jobs(["train", "evaluate", "render"], cfg["scenes"], cfg["variants"], cfg["seeds"])
    expected += [(rule, (("scene", s),)) for rule, s in product(["data", "rays"], cfg["scenes"])]
    expected += [("report_manifest", ()), ("report", ())]
    assert jobs == sorted(expected) and len(jobs) == 3 * 2 + 3 * 5 * 3 * 3 + 2


@pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")
def test_workflow_manifest_carries_the_claims(tmp_path, stub_bin):  # noqa: F811
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["scenes"] = {"diffuse": cfg["scenes"]["diffuse"]}
    cfg["variants"] = {"nerf": {"method": "nerf"}, "mipnerf360": {"method": "mipnerf360"}}
    cfg["seeds"] = [0, 1]
    cfg["claims"] = [claim(variant="mipnerf360", comparator="nerf", metric="samples_per_ray",
                           direction="lower")]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    target = "results/manifests/report.json"
    snakemake(target, "--cores", "2", "--configfile", str(config), workdir=tmp_path, path_prefix=stub_bin)
    manifest = json.loads((tmp_path / target).read_text())
    assert manifest["claims"] == cfg["claims"]
    # a changed claim reruns the manifest (and so the report); an unchanged one nothing
    def planned() -> list:
        return planned_jobs(snakemake("-n", target, "--configfile", str(config), workdir=tmp_path).stdout)

    assert planned() == []
    cfg["claims"][0]["margin"] = 1.0
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert planned() == [("report_manifest", ())]
