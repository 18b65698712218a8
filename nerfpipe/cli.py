"""`nerfpipe STAGE ...`: one subcommand per workflow stage.

Each subcommand parses its arguments and calls one function of the package. The workflow
passes resolved settings as JSON (`--settings`); people can instead name a config file with a
scene or variant (`--config config/config.yaml --variant nerf`). A NerfpipeError (bad input)
is printed as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from nerfpipe import layout
from nerfpipe.device import resolve_device
from nerfpipe.errors import NerfpipeError

# The original implementation's training flags, kept so that its users' commands carry over.
LEGACY_FLAGS = """\
legacy flags of the original implementation (override the variant's settings):
  -t / --ref_nerf   train Ref-NeRF (method refnerf)     -u / --srgb   sRGB output
  -s / --amp        mixed precision                     -w / --white_bkgd   white background
  --grad_clip X     clip gradient norm (<= 0: none)     --render_depth / --render_normal
  --prop_normal     normals on the proposal network     --dataset_name NAME (recorded only)
"""


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
    from nerfpipe.data.prepare import prepare_scene

    scene = check_scene_settings(_settings(args, "scene"))
    out = _path(args, "out", "data")
    name = scene.get("scene") or args.scene or out.name
    prepare_scene(layout.check_name("scene", name), scene, out)
    print(f"data: {out}")


def cmd_rays(args: argparse.Namespace) -> None:
    from nerfpipe.rays import build_ray_cache

    data = _path(args, "data", "data")
    out = _path(args, "out", "rays")
    build_ray_cache(data, out)
    print(f"rays: {out}")


def _apply_legacy_flags(settings: dict, args: argparse.Namespace) -> dict:
    if args.ref_nerf:
        settings["method"] = "refnerf"
    for flag in ("srgb", "amp", "white_bkgd", "render_depth", "render_normal", "prop_normal"):
        if getattr(args, flag):
            settings[flag] = True
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
    from nerfpipe.train import train

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
    summary = train(data, rays, out, settings, threads=args.threads, device=str(device))
    print(f"train: {out} ({summary['iterations']} iterations in {summary['train_seconds']:.1f} s, "
          f"{summary['rays_per_second']:.0f} rays/s, train PSNR {summary['final_train_psnr']:.2f} dB)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from nerfpipe.config import check_output_options, load_config, output_settings, resolve_variant
    from nerfpipe.evaluate import evaluate

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
    m = evaluate(data, train_dir, out, chunk=args.chunk, threads=args.threads, device=str(device),
                 options=options)
    print(f"evaluate: {out}: psnr {m['psnr']:.2f} dB (legacy softl1 figure {m['psnr_softl1']:.2f}), "
          f"ssim {m['ssim']:.4f}")


def cmd_render(args: argparse.Namespace) -> None:
    from nerfpipe.config import check_render_options
    from nerfpipe.render_stage import render_orbit_video

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
    render_orbit_video(data, train_dir, out, options, threads=args.threads, chunk=args.chunk,
                       device=str(device))
    print(f"render: {out}")


def cmd_report(args: argparse.Namespace) -> None:
    """--manifest FILE (what the workflow passes), or a manifest built from nerfpipe.layout below
    --results for --config FILE or --settings JSON; the same report either way."""
    from nerfpipe import report as rep
    from nerfpipe.layout import REPORT_FILES, report_dir

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
    rep.build_report(manifest, out, source=source)
    print(f"report: {out / REPORT_FILES['md']}")


def cmd_readme(args: argparse.Namespace) -> None:
    import os

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nerfpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, names: bool = True, settings: bool = True) -> None:
        if settings:
            p.add_argument("--settings", help="resolved settings as a JSON object (what the workflow passes)")
        p.add_argument("--config", help="config file to resolve settings from instead of --settings")
        if names:
            p.add_argument("--scene", help="scene name (with --config)")
            p.add_argument("--variant", help="variant name (with --config)")
            p.add_argument("--seed", type=int, help="random seed (default: the config's first seed)")
        p.add_argument("--threads", type=int, help="torch CPU threads")

    p = sub.add_parser("data", help="generate or load a scene into results/data/{scene}")
    common(p)
    p.add_argument("--out")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("rays", help="precompute the training rays of a scene")
    common(p, settings=False)
    p.add_argument("--data")
    p.add_argument("--out")
    p.set_defaults(func=cmd_rays)

    p = sub.add_parser("train", help="train one variant on one scene", epilog=LEGACY_FLAGS,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--data")
    p.add_argument("--rays")
    p.add_argument("--out")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--runtime", help="JSON object of log_every, ckpt_every, max_bad_steps (what the "
                   "workflow passes; they cannot change the weights)")
    p.add_argument("--iterations", type=int, help="override the number of iterations")
    p.add_argument("--sampling-backend", dest="sampling_backend", choices=["auto", "ext", "torch"])
    p.add_argument("-t", "--ref_nerf", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-u", "--srgb", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-s", "--amp", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-w", "--white_bkgd", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--grad_clip", type=float, help=argparse.SUPPRESS)
    p.add_argument("--render_depth", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--render_normal", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prop_normal", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dataset_name", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    for name, func, helptext in (("evaluate", cmd_evaluate, "render and measure the test split"),
                                 ("render", cmd_render, "render the orbit videos")):
        p = sub.add_parser(name, help=helptext)
        common(p)
        p.add_argument("--data")
        p.add_argument("--train")
        p.add_argument("--out")
        p.add_argument("--chunk", type=int, help="rays per forward pass (bounds memory)")
        p.add_argument("--device", help=DEVICE_HELP)
        p.set_defaults(func=func)

    p = sub.add_parser("report", help="build the comparison report",
                       description="nerfpipe report --manifest FILE --out DIR (the workflow), or "
                       "--config FILE / --settings JSON [--results DIR] [--out DIR] (by hand)")
    common(p, names=False)
    p.add_argument("--manifest", help="JSON manifest naming every run's files (the workflow writes it)")
    p.add_argument("--results", help="results root to find the runs in, with --config (default: its "
                   "results) or --settings (default: results)")
    p.add_argument("--out", help="report folder (default: RESULTS/report; required with --manifest)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("readme", help="copy the report's table into README.md")
    p.add_argument("--report", default="results/report/report.md")
    p.add_argument("--readme", default="README.md")
    p.set_defaults(func=cmd_readme)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit status: 0 done, 2 bad input (one line naming the file, key or
    flag), 1 anything unexpected (one line; NERFPIPE_DEBUG=1 shows the traceback), 130 Ctrl-C."""
    args = build_parser().parse_args(argv)
    try:
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
