"""`nerfpipe STAGE ...`: one subcommand per workflow stage.

Each subcommand parses its arguments and calls one function of the package. The workflow
passes resolved settings as JSON (`--settings`); people can instead name a config file with a
scene or variant (`--config config/config.yaml --variant nerf`). A NerfpipeError (bad input)
is printed as one line and exits with status 2.

Messages go to stderr through the `nerfpipe` logger (-v: debug, -q: warnings only); train,
evaluate and render show progress as a bar on a terminal and otherwise as one line every
--progress-interval seconds (nerfpipe.progress). Results go to stdout, one line per command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import NoReturn

from nerfpipe import __version__, layout
from nerfpipe import progress as progress_mod
from nerfpipe.device import resolve_device
from nerfpipe.errors import NerfpipeError

log = logging.getLogger("nerfpipe.cli")

# The original implementation's boolean training flags (settings keys), each with a --no- form.
LEGACY_BOOLEANS = {
    "srgb": ("-u", "--srgb", "tone-map the predicted linear colour to sRGB (--no-srgb: linear output)"),
    "amp": ("-s", "--amp", "mixed precision (float16 on CUDA, bfloat16 on CPUs with native bf16); "
            "--no-amp: float32"),
    "white_bkgd": ("-w", "--white_bkgd", "composite onto a white background (--no-white_bkgd: black)"),
    "render_depth": (None, "--render_depth", "write depth renders when evaluating this run"),
    "render_normal": (None, "--render_normal", "write normal renders when evaluating this run"),
    "prop_normal": (None, "--prop_normal", "orientation loss on the proposal levels too"),
}

# Options a subcommand accepts only so that older command lines keep working: it does not use
# them, so its --help does not list them (their values are still checked).
IGNORED = {
    "data": ("--variant", "--seed", "--threads"),
    "rays": ("--variant", "--seed", "--threads"),
    "report": ("--threads",),
}

# Two real command lines per subcommand, printed at the end of its --help.
EXAMPLES = {
    "data": [
        "nerfpipe data --config config/config.yaml --scene diffuse",
        "nerfpipe data --settings '{\"path\": \"data/nerf_synthetic/lego\"}' --scene lego "
        "--out results/blender/data/lego",
    ],
    "rays": [
        "nerfpipe rays --config config/config.yaml --scene diffuse",
        "nerfpipe rays --data results/blender/data/lego --out results/blender/rays/lego",
    ],
    "train": [
        "nerfpipe train --config config/config.yaml --scene diffuse --variant mipnerf360 --seed 0",
        "nerfpipe train --config config/config.yaml --scene glossy --variant refnerf --iterations 500 "
        "--no-amp --no-white_bkgd --progress-interval 10",
    ],
    "evaluate": [
        "nerfpipe evaluate --config config/config.yaml --scene diffuse --variant nerf",
        "nerfpipe evaluate --data results/data/diffuse --train results/train/diffuse/nerf/seed0 "
        "--out results/eval/diffuse/nerf/seed0 --settings '{\"render_depth\": false}' --chunk 4096",
    ],
    "render": [
        "nerfpipe render --config config/config.yaml --scene diffuse --variant mipnerf360",
        "nerfpipe render --data results/data/diffuse --train results/train/diffuse/nerf/seed0 "
        "--out results/render/diffuse/nerf/seed0 --settings '{\"frames\": 60, \"fps\": 24}'",
    ],
    "report": [
        "nerfpipe report --config config/config.yaml",
        "nerfpipe report --manifest results/manifests/report.json --out results/report",
    ],
    "readme": [
        "nerfpipe readme",
        "nerfpipe readme --report results/report/report.md --readme README.md",
    ],
}


def _json_option(text: str, flag: str = "--settings") -> object:
    from nerfpipe.io import parse_json

    return parse_json(text, flag)


def _settings(args: argparse.Namespace, kind: str) -> dict:
    """Resolved settings from --settings JSON or from --config with --scene/--variant."""
    if getattr(args, "settings", None):
        value = _json_option(args.settings)
        if not isinstance(value, dict):
            raise NerfpipeError("--settings: expected a JSON object")
        return value
    if not getattr(args, "config", None):
        raise NerfpipeError(f"give --settings JSON or --config FILE to choose the {kind}")
    from nerfpipe import config as cfgmod

    cfg = cfgmod.load_config(args.config)
    if kind == "scene":
        return cfgmod.resolve_scene(cfg, _name(args, "scene"))
    settings = cfgmod.resolve_variant(cfg, _name(args, "variant"), seed=args.seed)
    settings["scene"] = _name(args, "scene")
    return settings


def _name(args: argparse.Namespace, kind: str) -> str:
    """--scene / --variant, checked against the config's name pattern before any path is built."""
    value = getattr(args, kind, None)
    if value is None:
        raise NerfpipeError(f"--{kind} is required with --config")
    return layout.check_name(f"--{kind}", value)


def _results_default(args: argparse.Namespace, stage: str) -> Path:
    """Default artifact folder of a stage when a config and names are given."""
    from nerfpipe import config as cfgmod

    if not getattr(args, "config", None) or not getattr(args, "scene", None):
        raise NerfpipeError(f"--{stage} is required without --config and --scene")
    cfg = cfgmod.load_config(args.config)
    scene = _name(args, "scene")
    cfgmod.resolve_scene(cfg, scene)  # an unknown scene is named here, not as a missing folder
    if stage == "data":
        return layout.data_dir(cfg["results"], scene)
    if stage == "rays":
        return layout.rays_dir(cfg["results"], scene)
    variant = _name(args, "variant")
    cfgmod.resolve_variant(cfg, variant)  # likewise for an unknown variant
    return layout.run_dir(cfg["results"], stage, scene, variant, 0 if args.seed is None else args.seed)


def _path(args: argparse.Namespace, attr: str, stage: str) -> Path:
    """--attr when given, else the stage's folder under the config's results root."""
    value = getattr(args, attr, None)
    return Path(value) if value else _results_default(args, stage)


def cmd_data(args: argparse.Namespace) -> None:
    from nerfpipe.config import check_scene_settings
    from nerfpipe.stages.data import prepare_scene

    scene = check_scene_settings(_settings(args, "scene"))
    out = _path(args, "out", "data")
    name = scene.get("scene") or args.scene or out.name
    prepare_scene(layout.check_name("scene", name), scene, out)
    print(f"data: {out}")


def cmd_rays(args: argparse.Namespace) -> None:
    from nerfpipe.stages.rays import build_ray_cache

    data = _path(args, "data", "data")
    out = _path(args, "out", "rays")
    build_ray_cache(data, out)
    print(f"rays: {out}")


def _apply_legacy_flags(settings: dict, args: argparse.Namespace) -> dict:
    if args.ref_nerf:
        settings["method"] = "refnerf"
    for flag in LEGACY_BOOLEANS:
        value = getattr(args, flag)
        if value is not None:  # given as --flag (True) or --no-flag (False)
            settings[flag] = value
    if args.grad_clip is not None:
        settings["grad_clip"] = args.grad_clip
    if args.dataset_name:
        settings["dataset_name"] = args.dataset_name
    if args.iterations is not None:
        settings["iterations"] = args.iterations
    if args.sampling_backend:
        settings["sampling_backend"] = args.sampling_backend
    return settings


def cmd_train(args: argparse.Namespace) -> None:
    from nerfpipe.config import TRAIN_RUNTIME_KEYS, check_train_settings
    from nerfpipe.stages.train import train

    settings = _apply_legacy_flags(_settings(args, "variant"), args)
    if args.runtime:
        runtime = _json_option(args.runtime, "--runtime")
        if not isinstance(runtime, dict) or set(runtime) - set(TRAIN_RUNTIME_KEYS):
            raise NerfpipeError(f"--runtime: expected a JSON object of {', '.join(TRAIN_RUNTIME_KEYS)}")
        settings.update(runtime)
    if args.seed is not None:
        settings["seed"] = args.seed
    out = _path(args, "out", "train")
    settings.setdefault("scene", Path(args.data).name if args.data else args.scene)
    check_train_settings(settings)
    data = _path(args, "data", "data")
    rays = _path(args, "rays", "rays")
    device = resolve_device(args.device)
    log.debug("train settings: %s", settings)
    summary = train(data, rays, out, settings, threads=args.threads, device=str(device),
                    tensorboard=args.tensorboard, tensorboard_every=args.tensorboard_every,
                    max_in_memory=_in_memory_limit(args))
    print(f"train: {out} ({summary['iterations']} iterations in {summary['train_seconds']:.1f} s, "
          f"{summary['rays_per_second']:.0f} rays/s, train PSNR {summary['final_train_psnr']:.2f} dB)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from nerfpipe.config import check_output_options, load_config, output_settings, resolve_variant
    from nerfpipe.stages.evaluate import evaluate

    if args.settings:
        options = check_output_options(_json_option(args.settings))
    elif args.config and args.variant:
        options = output_settings(resolve_variant(load_config(args.config), _name(args, "variant")))
    else:
        options = {}
    data = _path(args, "data", "data")
    train_dir = _path(args, "train", "train")
    out = _path(args, "out", "eval")
    device = resolve_device(args.device)
    log.debug("evaluate options: %s", options)
    m = evaluate(data, train_dir, out, chunk=args.chunk, threads=args.threads, device=str(device),
                 options=options)
    print(f"evaluate: {out}: psnr {m['psnr']:.2f} dB (legacy softl1 figure {m['psnr_softl1']:.2f}), "
          f"ssim {m['ssim']:.4f}")


def cmd_render(args: argparse.Namespace) -> None:
    from nerfpipe.config import check_render_options
    from nerfpipe.stages.render import render_orbit_video

    if args.settings:
        options = check_render_options(_json_option(args.settings))
    elif args.config:
        from nerfpipe import config as cfgmod

        options = cfgmod.load_config(args.config)["render"]
    else:
        options = check_render_options({})
    data = _path(args, "data", "data")
    train_dir = _path(args, "train", "train")
    out = _path(args, "out", "render")
    device = resolve_device(args.device)
    log.debug("render options: %s", options)
    render_orbit_video(data, train_dir, out, options, threads=args.threads, chunk=args.chunk,
                       device=str(device))
    print(f"render: {out}")


def cmd_report(args: argparse.Namespace) -> None:
    """--manifest FILE (what the workflow passes), or a manifest built from nerfpipe.layout below
    --results for --config FILE or --settings JSON; the same report either way."""
    from nerfpipe import reporting as rep
    from nerfpipe.layout import REPORT_FILES, report_dir
    from nerfpipe.stages.report import build_report

    given = [flag for flag in ("manifest", "settings", "config") if getattr(args, flag, None)]
    if len(given) != 1:
        raise NerfpipeError("give exactly one of --manifest FILE, --config FILE or --settings JSON"
                            + (f" (got --{' and --'.join(given)})" if given else ""))
    if args.manifest:
        if args.results:
            raise NerfpipeError("--results is not used with --manifest (the manifest names every file)")
        if not args.out:
            raise NerfpipeError("--out is required with --manifest")
        manifest, source = rep.load_manifest(args.manifest), args.manifest
        out = Path(args.out)
    elif args.config:
        from nerfpipe import config as cfgmod

        cfg = cfgmod.load_config(args.config)
        results = args.results or cfg["results"]
        manifest = rep.manifest_from_config(cfg, results, source=args.config)
        source = f"manifest built from {args.config}"
        out = Path(args.out) if args.out else report_dir(results)
    else:
        opts = rep.parse_settings(args.settings, "--settings")
        results = args.results or "results"
        manifest = rep.manifest_from_results(results, **opts, source="--settings")
        source = "manifest built from --settings"
        out = Path(args.out) if args.out else report_dir(results)
    build_report(manifest, out, source=source)
    print(f"report: {out / REPORT_FILES['md']}")


def cmd_readme(args: argparse.Namespace) -> None:
    from nerfpipe.readme import update_readme

    update_readme(Path(args.report), Path(args.readme), cores=os.cpu_count())
    print(f"readme: table from {args.report} written into {args.readme}")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line, `nerfpipe CMD: error: ...`, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# CLI options that are config keys too: each is checked against that key's schema entry.
OPTION_SCHEMA = {
    "threads": "properties/resources/properties/train/properties/threads",
    "chunk": "$defs/train_settings/properties/eval_chunk",
    "iterations": "$defs/train_settings/properties/iterations",
    "grad_clip": "$defs/train_settings/properties/grad_clip",
    "seed": "properties/seeds/items",
}
DEVICE_HELP = "torch device: cpu, cuda or cuda:N (default: cuda if available, else cpu)"


def _check_options(args: argparse.Namespace) -> None:
    from nerfpipe.config import check_against

    for attr, pointer in OPTION_SCHEMA.items():
        value = getattr(args, attr, None)
        if value is not None:
            check_against(value, pointer, f"--{attr}")
    if getattr(args, "progress_interval", None) is not None:
        progress_mod.parse_interval(str(args.progress_interval), "--progress-interval")
    for attr, flag, minimum in (("max_in_memory", "--max-in-memory", 0), ("job_mem_mb", "--job-mem-mb", 1),
                                ("tensorboard_every", "--tensorboard-every", 1)):
        value = getattr(args, attr, None)
        if value is not None and value < minimum:
            raise NerfpipeError(f"{flag}: {value} is less than the minimum of {minimum}")
    for flag in IGNORED.get(args.command, ()):
        if getattr(args, flag[2:].replace("-", "_"), None) is not None:
            log.debug("%s is not used by `nerfpipe %s`; ignored", flag, args.command)


def _in_memory_limit(args: argparse.Namespace) -> int | None:
    """--max-in-memory, else half the job's memory (--job-mem-mb): the other half is left for the
    model, its activations and the batch gathering; None leaves the default to train."""
    if args.max_in_memory is not None:
        return args.max_in_memory
    if args.job_mem_mb is not None:
        return args.job_mem_mb * 2**20 // 2
    return None


def _epilog(command: str) -> str:
    return "\n".join(["examples:", *(f"  {example}" for example in EXAMPLES[command])])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nerfpipe", description=__doc__.splitlines()[0],
                     epilog="`nerfpipe COMMAND --help` describes a command's options, with examples.")
    parser.add_argument("--version", action="version", version=f"nerfpipe {__version__}",
                        help="print nerfpipe's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    with_progress = ("train", "evaluate", "render")

    def messages(p: argparse.ArgumentParser, command: str) -> None:
        """-v / -q on every command; --progress-interval on those with long loops."""
        group = p.add_argument_group("messages")
        level = group.add_mutually_exclusive_group()
        level.add_argument("-v", "--verbose", action="count", default=0,
                           help="also print debug messages (settings, device, data sizes), each with its "
                           "time and source")
        level.add_argument("-q", "--quiet", action="store_true",
                           help="print only warnings and errors (no progress); the result line on stdout "
                           "stays")
        if command in with_progress:
            group.add_argument(
                "--progress-interval", type=float, metavar="SECONDS",
                help="seconds between two progress lines when stderr is not a terminal (on a terminal: a "
                f"progress bar); default: ${progress_mod.INTERVAL_ENV} or "
                f"{progress_mod.DEFAULT_INTERVAL_S:g}")

    def add(name: str, func, helptext: str, *, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext, description=textwrap.fill(description, 90),
                           epilog=_epilog(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    def hidden(p: argparse.ArgumentParser, command: str) -> None:
        """The options `command` accepts for older command lines but does not use (IGNORED)."""
        for flag in IGNORED[command]:
            kind = int if flag in ("--seed", "--threads") else str
            p.add_argument(flag, type=kind, help=argparse.SUPPRESS)

    def config_option(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--config", metavar="FILE", help=f"config file (YAML) to take {what} from instead "
                       "of --settings")

    def names(p: argparse.ArgumentParser, scene: str, variant: str | None = None,
              seed: str | None = None) -> None:
        p.add_argument("--scene", metavar="NAME", help=scene)
        if variant:
            p.add_argument("--variant", metavar="NAME", help=variant)
        if seed:
            p.add_argument("--seed", type=int, metavar="N", help=seed)

    threads_help = "torch CPU threads (default: torch's choice)"
    def paths_note(*more: str) -> str:
        return ("default: its folder under the config's results root, from --config, --scene"
                + "".join(f", {flag}" for flag in more))

    # ------------------------------------------------------------------ data
    p = add("data", cmd_data, "generate or load a scene into results/data/{scene}",
            description="Generate an embedded scene or load a Blender-format dataset, and write its "
            "normalised arrays (results/data/{scene}).")
    p.add_argument("--settings", metavar="JSON", help="the scene's settings as a JSON object (what the "
                   "workflow passes), e.g. {\"synthetic\": \"diffuse\"} or {\"path\": \"DATASET_DIR\"}")
    config_option(p, "the scene (with --scene)")
    names(p, "scene name: picks the scene in --config, and names the data (default: the --out folder's "
          "name)")
    p.add_argument("--out", metavar="DIR", help=f"output folder ({paths_note()})")
    hidden(p, "data")

    # ------------------------------------------------------------------ rays
    p = add("rays", cmd_rays, "precompute the training rays of a scene",
            description="Precompute one ray per training pixel of a scene (results/rays/{scene}).")
    p.add_argument("--data", metavar="DIR", help=f"the scene's data folder ({paths_note()})")
    p.add_argument("--out", metavar="DIR", help=f"output folder ({paths_note()})")
    p.add_argument("--config", metavar="FILE", help="config file (YAML) whose results root holds the "
                   "default folders (with --scene)")
    names(p, "scene name, for the default folders with --config")
    hidden(p, "rays")

    # ------------------------------------------------------------------ train
    p = add("train", cmd_train, "train one variant on one scene",
            description="Train one variant on one scene with one seed; writes model.pt, config.json, "
            "train_log.csv (growing while it runs), summary.json, ckpt/ and, with TensorBoard installed, "
            "tb/. A killed run resumes from its last checkpoint with identical results.")
    p.add_argument("--settings", metavar="JSON", help="the variant's resolved training settings as a JSON "
                   "object (what the workflow passes)")
    config_option(p, "the variant (with --scene and --variant)")
    names(p, "scene name (with --config; default: the --data folder's name)",
          "variant name (with --config)",
          "random seed (default: the seed in --settings, or the config's first seed)")
    p.add_argument("--data", metavar="DIR", help=f"the scene's data folder ({paths_note()})")
    p.add_argument("--rays", metavar="DIR", help=f"the scene's ray cache ({paths_note()})")
    p.add_argument("--out", metavar="DIR", help=f"run folder ({paths_note('--variant', '--seed')})")
    p.add_argument("--threads", type=int, metavar="N", help=threads_help)
    p.add_argument("--device", metavar="DEVICE", help=DEVICE_HELP)
    p.add_argument("--runtime", metavar="JSON", help="JSON object of log_every, ckpt_every, max_bad_steps "
                   "(what the workflow passes; they cannot change the weights)")
    p.add_argument("--iterations", type=int, metavar="N", help="override the number of iterations")
    p.add_argument("--sampling-backend", dest="sampling_backend", choices=["auto", "ext", "torch"],
                   help="sampling kernels: the compiled extension (ext), the torch reference (torch), or "
                   "auto (the extension where it is built)")
    p.add_argument("--max-in-memory", dest="max_in_memory", type=int, metavar="BYTES",
                   help="ray caches larger than this are read batch by batch from their memory map "
                   "instead of loaded (same weights either way); default: half of --job-mem-mb, else "
                   "$NERFPIPE_MAX_IN_MEMORY_BYTES or 2 GiB")
    p.add_argument("--job-mem-mb", dest="job_mem_mb", type=int, metavar="MB",
                   help="memory the job was given (the workflow passes its mem_mb resource): ray caches "
                   "up to half of it are loaded into memory, larger ones read from the memory map")
    tb = p.add_argument_group("TensorBoard (the optional extra nerfpipe[tensorboard])")
    tb.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                    help="write TensorBoard events (losses, PSNR, lr, rays/s, validation images) into the "
                    "run folder's tb/; --no-tensorboard: don't (default: $NERFPIPE_TENSORBOARD=1|0, else "
                    "when tensorboard is installed)")
    tb.add_argument("--tensorboard-every", dest="tensorboard_every", type=int, metavar="N",
                    help="iterations between two validation images in TensorBoard (default: ckpt_every)")
    legacy = p.add_argument_group("flags of the original implementation (override the variant's "
                                  "settings; each boolean has a --no- form)")
    legacy.add_argument("-t", "--ref_nerf", action="store_true", help="train Ref-NeRF (method refnerf)")
    for key, (short, long, text) in LEGACY_BOOLEANS.items():
        flags = [short, long] if short else [long]
        legacy.add_argument(*flags, dest=key, action=argparse.BooleanOptionalAction, default=None,
                            help=text)
    legacy.add_argument("--grad_clip", type=float, metavar="X", help="clip the gradient norm at X "
                        "(<= 0: no clipping)")
    legacy.add_argument("--dataset_name", metavar="NAME", help="dataset name, recorded in config.json only")

    # ------------------------------------------------------------------ evaluate, render
    for name, func, helptext, description, settings_help, config_help in (
        ("evaluate", cmd_evaluate, "render and measure the test split",
         "Render every test view of a trained run and measure it: metrics.json, per_image.csv, "
         "weights.json, renders/.",
         "output options as a JSON object of eval_chunk, render_depth, render_normal (what the workflow "
         "passes; default: those the run was trained with)",
         "the variant's output options and the default folders (with --scene and --variant)"),
        ("render", cmd_render, "render the orbit videos",
         "Render a trained run along an orbit: orbit_rgb.mp4, orbit_rgb.gif, orbit_depth.gif, "
         "orbit_normal.gif.",
         "render options as a JSON object of frames, elevation_deg, radius, fps, resolution_scale and "
         "optionally eval_chunk (what the workflow passes; default: the schema's defaults)",
         "the render section and the default folders (with --scene and --variant)"),
    ):
        p = add(name, func, helptext, description=description)
        p.add_argument("--settings", metavar="JSON", help=settings_help)
        config_option(p, config_help)
        names(p, "scene name, for the default folders with --config",
              "variant name, for the default folders with --config",
              "seed of the run, for the default folders with --config (default: 0)")
        p.add_argument("--data", metavar="DIR", help=f"the scene's data folder ({paths_note()})")
        p.add_argument("--train", metavar="DIR", help="the trained run's folder "
                       f"({paths_note('--variant', '--seed')})")
        p.add_argument("--out", metavar="DIR", help=f"output folder ({paths_note('--variant', '--seed')})")
        p.add_argument("--threads", type=int, metavar="N", help=threads_help)
        p.add_argument("--chunk", type=int, metavar="RAYS",
                       help="rays per forward pass (bounds memory; default: the run's eval_chunk)")
        p.add_argument("--device", metavar="DEVICE", help=DEVICE_HELP)

    # ------------------------------------------------------------------ report
    p = add("report", cmd_report, "build the comparison report",
            description="Build the comparison report: nerfpipe report --manifest FILE --out DIR (the "
            "workflow), or --config FILE / --settings JSON [--results DIR] [--out DIR] (by hand).")
    p.add_argument("--manifest", metavar="FILE", help="JSON manifest naming every run's files (the "
                   "workflow writes it)")
    config_option(p, "the scenes, variants and seeds to report")
    p.add_argument("--settings", metavar="JSON", help="the report's settings as a JSON object (scenes, "
                   "variants, seeds, baseline, ablations), to report the runs found under --results")
    p.add_argument("--results", metavar="DIR", help="results root to find the runs in, with --config "
                   "(default: its results) or --settings (default: results)")
    p.add_argument("--out", metavar="DIR", help="report folder (default: RESULTS/report; required with "
                   "--manifest)")
    hidden(p, "report")

    # ------------------------------------------------------------------ readme
    p = add("readme", cmd_readme, "copy the report's table into README.md",
            description="Copy the comparison table of a report into README.md, between its demo-table "
            "markers.")
    p.add_argument("--report", default="results/report/report.md", metavar="FILE",
                   help="the report to copy from (default: %(default)s)")
    p.add_argument("--readme", default="README.md", metavar="FILE",
                   help="the README to write into (default: %(default)s)")
    for command, p in sub.choices.items():
        messages(p, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit status: 0 done, 2 bad input (one line naming the file, key or
    flag), 1 anything unexpected (one line; NERFPIPE_DEBUG=1 shows the traceback), 130 Ctrl-C."""
    args = build_parser().parse_args(argv)
    progress_mod.setup_logging(-1 if args.quiet else args.verbose)
    try:
        # Set for every command, so one command's --progress-interval never leaks into the next
        # in the same process; $NERFPIPE_PROGRESS_INTERVAL is checked before any work.
        progress_mod.set_interval(getattr(args, "progress_interval", None))
        if hasattr(args, "progress_interval"):
            progress_mod.interval()
        _check_options(args)
        args.func(args)
    except NerfpipeError as exc:
        print(f"nerfpipe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nerfpipe {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the top-level guard: never a bare traceback for users
        if os.environ.get("NERFPIPE_DEBUG") == "1":
            raise
        text = " ".join(str(exc).split()) or "no message"
        print(f"nerfpipe {args.command}: unexpected error: {type(exc).__name__}: {text} "
              "(run with NERFPIPE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
