# Shared helpers: the validated config, output paths, resources and per-job settings.
# Settings reach the CLI as JSON through `params:`, so Snakemake's params rerun trigger
# reruns exactly the jobs whose resolved settings changed (and what depends on them).
import json
import os
import sys

# The package that ships with this workflow resolves variants and owns the artifact layout
# (one implementation each).
sys.path.insert(0, workflow.basedir)
from pathlib import Path

from nerfpipe import layout
from nerfpipe.config import resolve_scene, resolve_variant, validate_config
from nerfpipe.config_yaml import read_config_file
from nerfpipe.settings import TRAIN_RUNTIME_KEYS, output_settings, weight_settings
from nerfpipe.errors import NerfpipeError
from snakemake.exceptions import WorkflowError

CONFIG_SOURCE = ", ".join(str(p) for p in workflow.overwrite_configfiles) or "config/config.yaml"
try:
    # Snakemake has parsed the files already, letting a duplicated key silently win: parse them
    # again strictly so that is an error naming the line.
    for _path in workflow.overwrite_configfiles or [os.path.join(workflow.basedir, "config/config.yaml")]:
        read_config_file(_path)
    CFG = validate_config(config, source=CONFIG_SOURCE)
except NerfpipeError as exc:
    raise WorkflowError(str(exc)) from None

RESULTS = CFG["results"]
SCENES = list(CFG["scenes"])
VARIANTS = list(CFG["variants"])
SEEDS = list(CFG["seeds"])
GPUS = CFG["resources"]["gpu"]
# One training run: its folder below train/, eval/ and render/ and its log/benchmark name.
RUN = layout.RUN

def check_cli_version():
    """Jobs call the `nerfpipe` on PATH; say so when it is not the package beside this Snakefile."""
    import shutil
    import subprocess

    from nerfpipe import __version__

    exe = shutil.which("nerfpipe")
    if exe is None:
        logger.warning("nerfpipe: no `nerfpipe` command on PATH; jobs will fail (pip install -e . or "
                       "activate the project's environment)")
        return
    try:
        found = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        found = []
    if found[-1:] != [__version__]:
        logger.warning(f"nerfpipe: the `nerfpipe` on PATH ({exe}) reports {' '.join(found) or 'nothing'}, "
                       f"but this workflow's package is {__version__}; jobs may run other code")


if workflow.is_main_process and not workflow.deployment_settings.deployment_method:
    check_cli_version()  # with --sdm conda, jobs run the nerfpipe of the workflow's environment


# A dataset folder that does not exist stops the workflow before any job is planned.
for _name in SCENES:
    _scene = resolve_scene(CFG, _name)
    if "path" in _scene and not Path(_scene["path"]).expanduser().is_dir():
        raise WorkflowError(
            f"{CONFIG_SOURCE}: scenes.{_name}.path: dataset folder {_scene['path']} not found"
        )


# Only configured names match, so a target naming an unknown scene, variant or seed is
# "no rule to produce" it, not an error inside a settings function.
wildcard_constraints:
    scene="|".join(SCENES),
    variant="|".join(VARIANTS),
    seed="|".join(str(s) for s in SEEDS),


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


def dataset_files(wildcards):
    """Input of the data stage for a `path:` scene: its transforms_*.json and every image they
    name, so editing the dataset reruns exactly that scene. Embedded scenes have no input files.
    Files the transforms name but that are missing or outside the folder are left to the data
    stage, which reports them naming the file."""
    from nerfpipe.data.transforms import resolve_frame_path

    scene = resolve_scene(CFG, wildcards.scene)
    if "path" not in scene:
        return []
    root = Path(scene["path"]).expanduser()
    files = []
    for split in ("train", "val", "test"):
        transforms = root / f"transforms_{split}.json"
        if not transforms.is_file():
            continue
        files.append(str(transforms))
        try:
            frames = json.loads(transforms.read_text()).get("frames", [])
            for frame in frames:
                path = resolve_frame_path(root, frame["file_path"])
                if path.is_file():
                    files.append(str(path))
        except (ValueError, TypeError, KeyError, AttributeError, OSError, NerfpipeError):
            continue
    return files


def variant_settings(wildcards):
    """The training settings of one variant and seed that determine its weights, as JSON (the
    train rule's rerun trigger; logging and checkpoint cadence are left out, see train_runtime)."""
    settings = resolve_variant(CFG, wildcards.variant, int(wildcards.seed))
    return json.dumps(weight_settings(settings), sort_keys=True)


def train_runtime(wildcards, output):
    """log_every, ckpt_every, max_bad_steps of one variant as JSON. They cannot change the weights,
    so they must not retrain anything: a params function that takes `output` is derived from the
    job's files, and Snakemake leaves derived params out of the params rerun trigger."""
    settings = resolve_variant(CFG, wildcards.variant, int(wildcards.seed))
    return json.dumps({k: settings[k] for k in TRAIN_RUNTIME_KEYS}, sort_keys=True)


def evaluate_settings(wildcards):
    """The evaluate options of one variant (chunk size, depth and normal images) as JSON."""
    return json.dumps(output_settings(resolve_variant(CFG, wildcards.variant)), sort_keys=True)


def render_settings(wildcards):
    """The config's render section plus the variant's chunk size, as JSON."""
    chunk = resolve_variant(CFG, wildcards.variant)["eval_chunk"]
    return json.dumps({**CFG["render"], "eval_chunk": chunk}, sort_keys=True)


def parent_dir(path):
    return os.path.dirname(str(path))


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


def evaluation_before_render(wildcards):
    """With `render_after_evaluate` (the slurm profile), render takes its run's metrics.json as an
    input, so the two form one group job on one GPU. Not ancient(): Snakemake would then also skip
    render's own rerun triggers (params) whenever the evaluation reruns."""
    if not CFG["render_after_evaluate"]:
        return []
    run = layout.run_rel(wildcards.scene, wildcards.variant, wildcards.seed)
    return out(f"eval/{run}/{layout.EVAL_FILES['metrics']}")
