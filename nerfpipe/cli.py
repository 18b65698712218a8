"""`nerfpipe STAGE ...`: one subcommand per workflow stage.

Each subcommand parses its arguments and calls one function of the package. The workflow
passes resolved settings as JSON (`--settings`); people can instead name a config file with a
scene or variant (`--config config/config.yaml --variant nerf`). A NerfpipeError (bad input)
is printed as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerfpipe.errors import NerfpipeError

# The original implementation's training flags, kept so that its users' commands carry over.
LEGACY_FLAGS = """\
legacy flags of the original implementation (override the variant's settings):
  -t / --ref_nerf   train Ref-NeRF (method refnerf)     -u / --srgb   sRGB output
  -s / --amp        mixed precision                     -w / --white_bkgd   white background
  --grad_clip X     clip gradient norm (<= 0: none)     --render_depth / --render_normal
  --prop_normal     normals on the proposal network     --dataset_name NAME (recorded only)
"""


def _settings(args: argparse.Namespace, kind: str) -> dict:
    """Resolved settings from --settings JSON or from --config with --scene/--variant."""
    if getattr(args, "settings", None):
        try:
            value = json.loads(args.settings)
        except json.JSONDecodeError as exc:
            raise NerfpipeError(f"--settings: not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise NerfpipeError("--settings: expected a JSON object")
        return value
    if not getattr(args, "config", None):
        raise NerfpipeError(f"give --settings JSON or --config FILE to choose the {kind}")
    from nerfpipe import config as cfgmod

    cfg = cfgmod.load_config(args.config)
    if kind == "scene":
        return cfgmod.resolve_scene(cfg, args.scene)
    if kind == "variant":
        settings = cfgmod.resolve_variant(cfg, args.variant, seed=args.seed)
        settings["scene"] = args.scene
        return settings
    return cfg


def _results_default(args: argparse.Namespace, stage: str) -> Path:
    """Default artifact folder of a stage when a config and names are given."""
    from nerfpipe import config as cfgmod

    if not getattr(args, "config", None) or not getattr(args, "scene", None):
        raise NerfpipeError(f"--{stage} is required without --config and --scene")
    cfg = cfgmod.load_config(args.config)
    cfgmod.resolve_scene(cfg, args.scene)  # an unknown scene is named here, not as a missing folder
    root = Path(cfg["results"])
    if stage == "data":
        return root / "data" / args.scene
    if stage == "rays":
        return root / "rays" / args.scene
    seed = 0 if args.seed is None else args.seed
    return root / stage / args.scene / args.variant / f"seed{seed}"


def _path(args: argparse.Namespace, attr: str, stage: str) -> Path:
    """--attr when given, else the stage's folder under the config's results root."""
    value = getattr(args, attr, None)
    return Path(value) if value else _results_default(args, stage)


def cmd_data(args: argparse.Namespace) -> None:
    from nerfpipe.data.prepare import prepare_scene

    scene = _settings(args, "scene")
    out = _path(args, "out", "data")
    prepare_scene(args.scene or out.name, scene, out)
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
    from nerfpipe.config import check_train_settings
    from nerfpipe.train import train

    settings = _apply_legacy_flags(_settings(args, "variant"), args)
    if args.seed is not None:
        settings["seed"] = args.seed
    out = _path(args, "out", "train")
    settings.setdefault("scene", Path(args.data).name if args.data else args.scene)
    check_train_settings(settings)
    data = _path(args, "data", "data")
    rays = _path(args, "rays", "rays")
    summary = train(data, rays, out, settings, threads=args.threads, device=args.device)
    print(f"train: {out} ({summary['iterations']} iterations in {summary['train_seconds']:.1f} s, "
          f"{summary['rays_per_second']:.0f} rays/s, train PSNR {summary['final_train_psnr']:.2f} dB)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from nerfpipe.evaluate import evaluate

    data = _path(args, "data", "data")
    train_dir = _path(args, "train", "train")
    out = _path(args, "out", "eval")
    m = evaluate(data, train_dir, out, chunk=args.chunk, threads=args.threads)
    print(f"evaluate: {out}: psnr {m['psnr']:.2f} dB (legacy softl1 figure {m['psnr_softl1']:.2f}), "
          f"ssim {m['ssim']:.4f}")


def cmd_render(args: argparse.Namespace) -> None:
    from nerfpipe.render_stage import render_orbit_video

    data = _path(args, "data", "data")
    train_dir = _path(args, "train", "train")
    out = _path(args, "out", "render")
    if args.settings:
        options = json.loads(args.settings)
    elif args.config:
        from nerfpipe import config as cfgmod

        options = cfgmod.load_config(args.config)["render"]
    else:
        options = {}
    render_orbit_video(data, train_dir, out, options, threads=args.threads, chunk=args.chunk)
    print(f"render: {out}")


def cmd_report(args: argparse.Namespace) -> None:
    from nerfpipe.report import report

    if args.settings:
        opts = json.loads(args.settings)
    else:
        from nerfpipe import config as cfgmod

        if not args.config:
            raise NerfpipeError("report needs --settings JSON or --config FILE")
        cfg = cfgmod.load_config(args.config)
        opts = {"scenes": list(cfg["scenes"]), "variants": list(cfg["variants"]), "seeds": cfg["seeds"],
                "baseline": cfg["report"]["baseline"],
                "ablations": {n: v["base"] for n, v in cfg["variants"].items() if "base" in v}}
    out = Path(args.out)
    report(Path(args.results), out, opts["scenes"], opts["variants"], opts["seeds"], opts["baseline"],
           opts.get("ablations"))
    print(f"report: {out / 'report.md'}")


def cmd_readme(args: argparse.Namespace) -> None:
    import os

    from nerfpipe.readme import update_readme

    update_readme(Path(args.report), Path(args.readme), cores=os.cpu_count())
    print(f"readme: table from {args.report} written into {args.readme}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nerfpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, names: bool = True) -> None:
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
    common(p)
    p.add_argument("--data")
    p.add_argument("--out")
    p.set_defaults(func=cmd_rays)

    p = sub.add_parser("train", help="train one variant on one scene", epilog=LEGACY_FLAGS,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--data")
    p.add_argument("--rays")
    p.add_argument("--out")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
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
        p.set_defaults(func=func)

    p = sub.add_parser("report", help="build the comparison report")
    common(p, names=False)
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="results/report")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("readme", help="copy the report's table into README.md")
    p.add_argument("--report", default="results/report/report.md")
    p.add_argument("--readme", default="README.md")
    p.set_defaults(func=cmd_readme)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except NerfpipeError as exc:
        print(f"nerfpipe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
