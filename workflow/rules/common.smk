# Shared helpers: the validated config, output paths, resources and per-job settings.
# Settings reach the CLI as JSON through `params:`, so Snakemake's params rerun trigger
# reruns exactly the jobs whose resolved settings changed (and what depends on them).
import json
import os
import sys

# The package that ships with this workflow resolves variants (one implementation).
sys.path.insert(0, workflow.basedir)
from nerfpipe.config import resolve_scene, resolve_variant, validate_config
from nerfpipe.errors import NerfpipeError
from snakemake.exceptions import WorkflowError

CONFIG_SOURCE = ", ".join(str(p) for p in workflow.overwrite_configfiles) or "config/config.yaml"
try:
    CFG = validate_config(config, source=CONFIG_SOURCE)
except NerfpipeError as exc:
    raise WorkflowError(str(exc)) from None

RESULTS = CFG["results"]
SCENES = list(CFG["scenes"])
VARIANTS = list(CFG["variants"])
SEEDS = list(CFG["seeds"])
GPUS = CFG["resources"]["gpu"]
# One training run: its folder below train/, eval/ and render/ and its log/benchmark name.
RUN = "{scene}/{variant}/seed{seed}"


wildcard_constraints:
    scene=r"[A-Za-z0-9_]+",
    variant=r"[A-Za-z0-9_]+",
    seed=r"[0-9]+",


def out(path):
    """A path below the configured results root."""
    return f"{RESULTS}/{path}"


def log_path(stage, name):
    return out(f"logs/{stage}/{name}.log")


def benchmark_path(stage, name):
    return out(f"benchmarks/{stage}/{name}.tsv")


def stage_resource(stage, key):
    return CFG["resources"][stage][key]


def all_runs(pattern):
    """`pattern` expanded over every configured scene x variant x seed."""
    return expand(pattern, scene=SCENES, variant=VARIANTS, seed=SEEDS)


def scene_settings(wildcards):
    """Resolved scene settings as JSON (scene_defaults <- the scene's keys)."""
    return json.dumps(resolve_scene(CFG, wildcards.scene), sort_keys=True)


def variant_settings(wildcards):
    """Resolved training settings of one variant and seed as JSON."""
    return json.dumps(resolve_variant(CFG, wildcards.variant, int(wildcards.seed)), sort_keys=True)


def parent_dir(path):
    return os.path.dirname(str(path))


RENDER_SETTINGS = json.dumps(CFG["render"], sort_keys=True)
REPORT_SETTINGS = json.dumps(
    {
        "scenes": SCENES,
        "variants": VARIANTS,
        "seeds": SEEDS,
        "baseline": CFG["report"]["baseline"],
        # ablation variant -> its base: the report's distortion-ablation figures
        "ablations": {name: v["base"] for name, v in CFG["variants"].items() if "base" in v},
    },
    sort_keys=True,
)
