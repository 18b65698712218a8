"""The Snakemake workflow: lint, job graph, rerun behaviour, and an end-to-end run.

Graph tests run the real Snakefile with a stand-in `nerfpipe` executable first on PATH that
writes each rule's declared outputs (and records the settings it was given), so they check
the workflow itself in seconds. The end-to-end tests (marker `workflow`) run the real CLI on
config/smoke.yaml once per session and share the completed results directory.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from itertools import product
from pathlib import Path

import pytest
import yaml

from nerfpipe.config import load_config, resolve_scene, resolve_variant
from nerfpipe.layout import RENDER_FILES, REPORT_FILES
from nerfpipe.settings import TRAIN_RUNTIME_KEYS, weight_settings

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "config" / "smoke.yaml"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = shutil.which("snakemake", path=str(VENV_BIN)) or shutil.which("snakemake")
RUN_TIMEOUT_S = 900  # the end-to-end smoke run is about a minute; generous for a busy machine

pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")

# Writes every output the rules declare; `config.json` / `meta.json` record the settings JSON
# exactly as received through the shell, so the tests can check quoting and resolution.
STUB_CLI = textwrap.dedent(
    '''\
    #!{python}
    import argparse, json, os, sys
    from pathlib import Path

    parser = argparse.ArgumentParser()
    parser.add_argument("stage")
    for flag in ("--out", "--data", "--rays", "--train", "--results", "--settings", "--threads", "--runtime",
                 "--manifest", "--job-mem-mb"):
        parser.add_argument(flag)
    parser.add_argument("--tensorboard", action="store_true")
    parser.add_argument("--no-tensorboard", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    settings = json.loads(args.settings) if args.settings is not None else None


    def write(name, text="stub"):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


    if args.stage in ("data", "rays"):
        write("meta.json", json.dumps({{"settings": settings, "data": args.data}}))
    elif args.stage == "train":
        write("ckpt/ckpt_000010.pt")
        if os.environ.get("STUB_FAIL_VARIANT") == settings["variant"]:
            sys.exit("stub: training fails on purpose")
        write("config.json", json.dumps(settings))
        write("runtime.json", args.runtime)
        write("job_mem_mb.txt", args.job_mem_mb)
        if args.tensorboard:
            write("tb/events.out.tfevents.stub")
        for name in ("model.pt", "train_log.csv", "summary.json"):
            write(name)
    elif args.stage == "evaluate":
        write("metrics.json", json.dumps({{"psnr": 20.0}}))
        write("per_image.csv", "image,psnr\\n0,20.0\\n")
        write("weights.json", "{{}}")
        write("renders/000_rgb.png")
    elif args.stage == "render":
        write("settings.json", json.dumps(settings))
        for name in {render_files}:
            write(name)
    elif args.stage == "report":
        write("settings.json", json.dumps(settings if settings is not None else args.manifest))
        for name in {report_files}:
            write(name)
        write("figures/psnr.png")
        write("videos/orbit.mp4")
    else:
        sys.exit(f"stub: unknown stage {{args.stage}}")
    print("stub", args.stage, "threads", args.threads)
    '''
)


# ------------------------------------------------------------------ helpers


def snakemake(
    *args: str, workdir: Path, path_prefix: Path | None = None, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in `workdir`; output is stdout and stderr together."""
    run_env = dict(os.environ)
    run_env.pop("SNAKEMAKE_PROFILE", None)
    run_env["PATH"] = os.pathsep.join(
        [*([str(path_prefix)] if path_prefix else []), str(VENV_BIN), run_env.get("PATH", "")]
    )
    run_env.update(env or {})
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(
        cmd, cwd=workdir, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=RUN_TIMEOUT_S,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


_JOB_RE = re.compile(r"^(?:local)?rule (\w+):$")


def planned_jobs(output: str) -> list[tuple[str, tuple]]:
    """(rule, ((wildcard, value), ...)) for every job a dry run lists, `all` excluded."""
    jobs: list[list] = []
    for line in output.splitlines():
        match = _JOB_RE.match(line.strip())
        if match:
            jobs.append([match.group(1), ()])
        elif line.strip().startswith("wildcards:") and jobs:
            pairs = line.strip()[len("wildcards:"):].split(",")
            jobs[-1][1] = tuple(tuple(p.strip().split("=", 1)) for p in pairs)
    return sorted((rule, wc) for rule, wc in jobs if rule != "all")


def run_jobs(rules, scenes, variants, seeds) -> list[tuple[str, tuple]]:
    return sorted(
        (rule, (("scene", sc), ("variant", v), ("seed", str(s))))
        for rule, sc, v, s in product(rules, scenes, variants, seeds)
    )


def smoke_variant(tmp_path: Path, edit) -> Path:
    """A copy of smoke.yaml changed by `edit(cfg)`, written to tmp_path."""
    cfg = yaml.safe_load(SMOKE.read_text())
    edit(cfg)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def dry_run(workdir: Path, config: Path, *args: str, path_prefix: Path | None = None):
    return planned_jobs(snakemake("-n", "--configfile", str(config), *args, workdir=workdir,
                                  path_prefix=path_prefix).stdout)


@pytest.fixture(scope="session")
def smoke_cfg() -> dict:
    return load_config(SMOKE)


@pytest.fixture(scope="session")
def stub_bin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stub_bin")
    cli = path / "nerfpipe"
    cli.write_text(STUB_CLI.format(python=sys.executable, render_files=tuple(RENDER_FILES.values()),
                                   report_files=tuple(REPORT_FILES.values())))
    cli.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def stub_results(tmp_path_factory, stub_bin) -> Path:
    """A working directory in which the whole smoke workflow completed with the stand-in CLI."""
    workdir = tmp_path_factory.mktemp("stub_run")
    snakemake("--cores", "2", "--configfile", str(SMOKE), workdir=workdir, path_prefix=stub_bin)
    return workdir


# ------------------------------------------------------------------ static checks


def test_lint_is_clean():
    proc = subprocess.run(
        [SNAKEMAKE, "--lint", "--configfile", str(SMOKE)], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout
    assert "Lints for" not in proc.stdout, proc.stdout


def test_dry_run_plans_every_scene_variant_seed(tmp_path, smoke_cfg):
    config = smoke_variant(tmp_path, lambda cfg: cfg.update(seeds=[0, 3]))
    jobs = dry_run(tmp_path, config)
    scenes, variants, seeds = list(smoke_cfg["scenes"]), list(smoke_cfg["variants"]), [0, 3]
    expected = run_jobs(["train", "evaluate", "render"], scenes, variants, seeds)
    expected += [(rule, (("scene", s),)) for rule, s in product(["data", "rays"], scenes)]
    expected += [("report_manifest", ()), ("report", ())]
    assert jobs == sorted(expected)


def test_default_config_is_used_only_without_configfile(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    default = load_config(REPO / "config" / "config.yaml")
    jobs = planned_jobs(snakemake("-n", workdir=tmp_path).stdout)
    trained = {(dict(wc)["scene"], dict(wc)["variant"]) for rule, wc in jobs if rule == "train"}
    assert trained == set(product(default["scenes"], default["variants"]))
    # --configfile replaces the default instead of being merged into it (no 'thin' scene).
    jobs = dry_run(tmp_path, SMOKE)
    assert {dict(wc)["scene"] for rule, wc in jobs if rule == "data"} == {"diffuse", "glossy"}


def test_invalid_config_stops_before_any_job(tmp_path):
    config = smoke_variant(tmp_path, lambda cfg: cfg["variants"]["nerf"].update(iteratons=5))
    proc = snakemake("-n", "--configfile", str(config), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert "variants.nerf: unknown key 'iteratons' (did you mean 'iterations'?)" in proc.stdout
    assert not (tmp_path / "results").exists()


def test_until_train_plans_only_the_stages_up_to_training(tmp_path, smoke_cfg):
    jobs = dry_run(tmp_path, SMOKE, "--until", "train")
    assert {rule for rule, _ in jobs} == {"data", "rays", "train"}
    assert len([j for j in jobs if j[0] == "train"]) == len(smoke_cfg["scenes"]) * len(smoke_cfg["variants"])


# ------------------------------------------------------------------ stand-in CLI runs


def test_completed_run_is_up_to_date_with_logs_and_benchmarks(stub_results, smoke_cfg):
    proc = snakemake("-n", "--configfile", str(SMOKE), workdir=stub_results)
    assert planned_jobs(proc.stdout) == [] and "Nothing to be done" in proc.stdout
    results = stub_results / smoke_cfg["results"]
    for scene, variant in product(smoke_cfg["scenes"], smoke_cfg["variants"]):
        run = f"{scene}/{variant}/seed0"
        for stage in ("train", "evaluate", "render"):
            log = results / "logs" / stage / f"{run}.log"
            assert log.read_text().startswith(f"stub {stage} threads 1"), log
            assert (results / "benchmarks" / stage / f"{run}.tsv").is_file()
        assert (results / "train" / run / "ckpt").is_dir()
    assert (results / "logs" / "report" / "report.log").is_file()


def test_settings_reach_the_cli_resolved_and_intact(stub_results, smoke_cfg):
    results = stub_results / smoke_cfg["results"]
    for scene, variant in product(smoke_cfg["scenes"], smoke_cfg["variants"]):
        resolved = resolve_variant(smoke_cfg, variant, 0)
        run = results / "train" / scene / variant / "seed0"
        # The train rule passes the settings that determine the weights, and the rest apart.
        assert json.loads((run / "config.json").read_text()) == weight_settings(resolved)
        assert json.loads((run / "runtime.json").read_text()) == {k: resolved[k] for k in TRAIN_RUNTIME_KEYS}
        # The job's memory reaches training, which keeps ray caches up to half of it in memory.
        assert (run / "job_mem_mb.txt").read_text() == str(smoke_cfg["resources"]["train"]["mem_mb"])
        render = json.loads((results / "render" / scene / variant / "seed0" / "settings.json").read_text())
        assert render == {**smoke_cfg["render"], "eval_chunk": resolved["eval_chunk"]}
    for scene in smoke_cfg["scenes"]:
        meta = json.loads((results / "data" / scene / "meta.json").read_text())
        assert meta["settings"] == resolve_scene(smoke_cfg, scene)
        rays = json.loads((results / "rays" / scene / "meta.json").read_text())
        assert rays["data"] == f"{smoke_cfg['results']}/data/{scene}"
    manifest = json.loads((results / "manifests" / "report.json").read_text())
    assert {k: v for k, v in manifest.items() if k != "runs"} == {
        "scenes": list(smoke_cfg["scenes"]), "variants": list(smoke_cfg["variants"]), "seeds": [0],
        "baseline": "nerf",
        "ablations": {n: v["base"] for n, v in smoke_cfg["variants"].items() if "base" in v},
    }


def test_changing_one_variant_reruns_only_that_variant(stub_results, smoke_cfg, tmp_path):
    config = smoke_variant(tmp_path, lambda cfg: cfg["variants"]["nerf_softl1"].update(lr=1e-3))
    jobs = dry_run(stub_results, config)
    expected = run_jobs(["train", "evaluate", "render"], smoke_cfg["scenes"], ["nerf_softl1"], [0])
    assert jobs == sorted([*expected, ("report_manifest", ()), ("report", ())])


def test_changing_a_base_reruns_the_variants_built_on_it(stub_results, smoke_cfg, tmp_path):
    config = smoke_variant(tmp_path, lambda cfg: cfg["variants"]["nerf"].update(iterations=21))
    jobs = dry_run(stub_results, config)
    expected = run_jobs(["train", "evaluate", "render"], smoke_cfg["scenes"], ["nerf", "nerf_softl1"], [0])
    assert jobs == sorted([*expected, ("report_manifest", ()), ("report", ())])


def test_changing_train_defaults_reruns_every_training(stub_results, smoke_cfg, tmp_path):
    config = smoke_variant(tmp_path, lambda cfg: cfg["train_defaults"].update(batch_size=128))
    jobs = dry_run(stub_results, config)
    assert {rule for rule, _ in jobs} == {"train", "evaluate", "render", "report_manifest", "report"}
    assert len(jobs) == 3 * len(smoke_cfg["scenes"]) * len(smoke_cfg["variants"]) + 2


def test_changing_render_settings_reruns_renders_and_report_only(stub_results, smoke_cfg, tmp_path):
    config = smoke_variant(tmp_path, lambda cfg: cfg["render"].update(frames=5))
    jobs = dry_run(stub_results, config)
    expected = run_jobs(["render"], smoke_cfg["scenes"], smoke_cfg["variants"], [0])
    assert jobs == sorted([*expected, ("report_manifest", ()), ("report", ())])


def test_changing_eval_chunk_reruns_evaluation_render_and_report_only(stub_results, smoke_cfg, tmp_path):
    config = smoke_variant(tmp_path, lambda cfg: cfg["train_defaults"].update(eval_chunk=512))
    jobs = dry_run(stub_results, config)
    expected = run_jobs(["evaluate", "render"], smoke_cfg["scenes"], smoke_cfg["variants"], [0])
    assert jobs == sorted([*expected, ("report_manifest", ()), ("report", ())])


@pytest.mark.parametrize("key, value", [("log_every", 7), ("ckpt_every", 3), ("max_bad_steps", 2)])
def test_changing_logging_or_checkpoint_cadence_reruns_nothing(stub_results, tmp_path, key, value):
    config = smoke_variant(tmp_path, lambda cfg: cfg["train_defaults"].update({key: value}))
    assert dry_run(stub_results, config) == []


def test_missing_dataset_folder_stops_the_dry_run_naming_it(tmp_path):
    missing = tmp_path / "no_such_dataset"
    config = smoke_variant(tmp_path, lambda cfg: cfg["scenes"].update(real={"path": str(missing)}))
    proc = snakemake("-n", "--configfile", str(config), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert f"dataset folder {missing} not found" in proc.stdout
    assert "scenes.real.path" in proc.stdout


def test_duplicated_config_key_stops_the_workflow_naming_the_line(tmp_path):
    config = tmp_path / "dup.yaml"
    config.write_text(SMOKE.read_text() + "\ntrain_defaults:\n  iterations: 3\n")
    proc = snakemake("-n", "--configfile", str(config), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert "duplicate key 'train_defaults'" in proc.stdout
    assert f"{config}: not valid YAML: line" in proc.stdout


def test_tensorboard_is_a_declared_output_only_when_switched_on(tmp_path, stub_bin):
    config = smoke_variant(tmp_path, lambda cfg: cfg.update(tensorboard=True))
    target = "results/train/diffuse/nerf/seed0/model.pt"
    snakemake(target, "--cores", "1", "--configfile", str(config), workdir=tmp_path, path_prefix=stub_bin)
    assert (tmp_path / "results/train/diffuse/nerf/seed0/tb/events.out.tfevents.stub").is_file()
    # Switching it off again retrains nothing (the flag is not a rerun trigger).
    proc = snakemake(target, "-n", "--configfile", str(SMOKE), workdir=tmp_path, path_prefix=stub_bin)
    assert planned_jobs(proc.stdout) == []


def test_changing_resources_reruns_nothing(stub_results, tmp_path):
    config = smoke_variant(tmp_path, lambda cfg: cfg["resources"]["train"].update(threads=2, runtime=11,
                                                                               mem_mb=3000))
    assert dry_run(stub_results, config) == []


def test_forcerun_evaluate_plans_evaluation_and_report_only(stub_results, smoke_cfg):
    jobs = dry_run(stub_results, SMOKE, "--forcerun", "evaluate")
    expected = run_jobs(["evaluate"], smoke_cfg["scenes"], smoke_cfg["variants"], [0])
    assert jobs == sorted([*expected, ("report_manifest", ()), ("report", ())])


def test_single_target_file_reruns_one_job(stub_results):
    target = "results/eval/glossy/mipnerf360/seed0/metrics.json"
    proc = snakemake(target, "-n", "--force", "--configfile", str(SMOKE), workdir=stub_results)
    jobs = planned_jobs(proc.stdout)
    assert jobs == [("evaluate", (("scene", "glossy"), ("variant", "mipnerf360"), ("seed", "0")))]


def test_snakemake_report_includes_the_marked_outputs(stub_results, stub_bin):
    snakemake("--configfile", str(SMOKE), "--report", "report.html", workdir=stub_results,
              path_prefix=stub_bin)
    html = (stub_results / "report.html").read_text(errors="replace")
    assert "orbit_rgb.mp4" in html and "report.csv" in html


def test_failed_training_keeps_its_resume_checkpoints(tmp_path, stub_bin):
    target = "results/train/diffuse/nerf_softl1/seed0/model.pt"
    proc = snakemake(target, "--cores", "1", "--configfile", str(SMOKE), workdir=tmp_path,
                     path_prefix=stub_bin, env={"STUB_FAIL_VARIANT": "nerf_softl1"}, check=False)
    assert proc.returncode != 0, proc.stdout
    run = tmp_path / "results" / "train" / "diffuse" / "nerf_softl1" / "seed0"
    assert not (run / "model.pt").exists()
    assert (run / "ckpt" / "ckpt_000010.pt").is_file()  # not an output: survives the failure
    log = tmp_path / "results" / "logs" / "train" / "diffuse" / "nerf_softl1" / "seed0.log"
    assert "training fails on purpose" in log.read_text()


# ------------------------------------------------------------------ real end-to-end run


def _cli_available() -> str | None:
    try:
        import nerfpipe.cli  # noqa: F401
    except ImportError as exc:
        return f"nerfpipe.cli is not importable ({exc})"
    if shutil.which("nerfpipe", path=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")])) is None:
        return "the `nerfpipe` command is not installed (pip install -e .)"
    return None


@pytest.fixture(scope="session")
def e2e_results(tmp_path_factory) -> Path:
    """The whole Snakefile on config/smoke.yaml with the real CLI, run once per session."""
    reason = _cli_available()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("e2e")
    snakemake("--cores", "2", "--configfile", str(SMOKE),
              "--workflow-profile", str(REPO / "workflow" / "profiles" / "local"), workdir=workdir)
    return workdir


@pytest.mark.workflow
def test_e2e_report_has_one_row_per_run(e2e_results, smoke_cfg):
    results = e2e_results / smoke_cfg["results"]
    for name in ("report.md", "report.csv", "report.html"):
        assert (results / "report" / name).stat().st_size > 0
    assert (results / "report" / "figures").is_dir()
    seeds = smoke_cfg["seeds"]
    # report.csv: one row per scene and variant, aggregated over seeds (plus summary rows).
    with open(results / "report" / "report.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["scene"] in smoke_cfg["scenes"]]
    assert {"scene", "variant", "n_seeds", "psnr", "psnr_softl1", "ssim"} <= set(rows[0])
    assert sorted((r["scene"], r["variant"]) for r in rows) == sorted(
        product(smoke_cfg["scenes"], smoke_cfg["variants"])
    )
    for row in rows:
        assert int(row["n_seeds"]) == len(seeds)
        assert math.isfinite(float(row["psnr"])) and math.isfinite(float(row["psnr_softl1"]))
    # runs.csv: one row per scene, variant and seed.
    with open(results / "report" / "runs.csv", newline="") as f:
        runs = list(csv.DictReader(f))
    assert {"scene", "variant", "seed", "psnr", "psnr_softl1", "ssim"} <= set(runs[0])
    assert sorted((r["scene"], r["variant"], int(r["seed"])) for r in runs) == sorted(
        product(smoke_cfg["scenes"], smoke_cfg["variants"], seeds)
    )


@pytest.mark.workflow
def test_e2e_every_run_has_its_artifacts(e2e_results, smoke_cfg):
    results = e2e_results / smoke_cfg["results"]
    for scene, variant, seed in product(smoke_cfg["scenes"], smoke_cfg["variants"], smoke_cfg["seeds"]):
        run = f"{scene}/{variant}/seed{seed}"
        metrics = json.loads((results / "eval" / run / "metrics.json").read_text())
        assert math.isfinite(metrics["psnr"])
        saved = json.loads((results / "train" / run / "config.json").read_text())
        assert saved["variant"] == variant and saved["seed"] == seed
        for name in ("orbit_rgb.mp4", "orbit_rgb.gif", "orbit_depth.gif"):
            assert (results / "render" / run / name).stat().st_size > 0


@pytest.mark.workflow
def test_e2e_forcerun_evaluate_plans_evaluation_and_report_only(e2e_results, smoke_cfg):
    proc = snakemake("-n", "--configfile", str(SMOKE), workdir=e2e_results)
    assert "Nothing to be done" in proc.stdout
    jobs = dry_run(e2e_results, SMOKE, "--forcerun", "evaluate")
    expected = run_jobs(["evaluate"], smoke_cfg["scenes"], smoke_cfg["variants"], smoke_cfg["seeds"])
    assert jobs == sorted([*expected, ("report_manifest", ()), ("report", ())])


@pytest.mark.workflow
def test_e2e_changing_one_variant_reruns_only_that_variant(e2e_results, smoke_cfg, tmp_path):
    config = smoke_variant(tmp_path, lambda cfg: cfg["variants"]["mipnerf360"].update(distortion_weight=0.0))
    jobs = dry_run(e2e_results, config)
    seeds = smoke_cfg["seeds"]
    expected = run_jobs(["train", "evaluate", "render"], smoke_cfg["scenes"], ["mipnerf360"], seeds)
    assert jobs == sorted([*expected, ("report_manifest", ()), ("report", ())])


def test_a_missing_or_other_nerfpipe_on_path_is_named_at_start(tmp_path):
    other = tmp_path / "bin"
    other.mkdir()
    fake = other / "nerfpipe"
    fake.write_text("#!/bin/sh\necho nerfpipe 0.0.1\n")
    fake.chmod(0o755)
    proc = snakemake("-n", "--configfile", str(SMOKE), workdir=tmp_path, path_prefix=other)
    assert f"the `nerfpipe` on PATH ({fake}) reports nerfpipe 0.0.1" in proc.stdout
    proc = snakemake("-n", "--configfile", str(SMOKE), workdir=tmp_path)
    assert "on PATH" not in proc.stdout
