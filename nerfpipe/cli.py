"""`nerfpipe STAGE ...`: one subcommand per workflow stage.

Each subcommand parses its arguments and calls one function of the package. The workflow
passes resolved settings as JSON (`--settings`); people can instead name a config file with a
scene or variant (`--config config/config.yaml --variant nerf`). A NerfpipeError (bad input)
is printed as one line and exits with status 2.

Messages go to stderr through the `nerfpipe` logger (-v: debug, -q: warnings only); train,
evaluate and render show progress as a bar on a terminal and otherwise as one line every
--progress-interval seconds (nerfpipe.progress). Results go to stdout, one line per command.

The parser itself (options, help texts, examples) is nerfpipe.cli_parser; this module checks the
parsed options and runs the command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from nerfpipe import layout
from nerfpipe import progress as progress_mod
from nerfpipe.cli_parser import IGNORED, LEGACY_BOOLEANS, build_parser
from nerfpipe.device import resolve_device
from nerfpipe.errors import NerfpipeError

log = logging.getLogger("nerfpipe.cli")


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
    from nerfpipe.settings import check_scene_settings
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
    from nerfpipe.settings import TRAIN_RUNTIME_KEYS, check_train_settings
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
    from nerfpipe.config import load_config, resolve_variant
    from nerfpipe.settings import check_output_options, output_settings
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
    from nerfpipe.settings import check_render_options
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


# CLI options that are config keys too: each is checked against that key's schema entry.
OPTION_SCHEMA = {
    "threads": "properties/resources/properties/train/properties/threads",
    "chunk": "$defs/train_settings/properties/eval_chunk",
    "iterations": "$defs/train_settings/properties/iterations",
    "grad_clip": "$defs/train_settings/properties/grad_clip",
    "seed": "properties/seeds/items",
}


def _check_options(args: argparse.Namespace) -> None:
    from nerfpipe.schema import check_against

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


# The function that runs each subcommand (`args.command`).
COMMANDS = {"data": cmd_data, "rays": cmd_rays, "train": cmd_train, "evaluate": cmd_evaluate,
            "render": cmd_render, "report": cmd_report, "readme": cmd_readme}


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
        COMMANDS[args.command](args)
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
