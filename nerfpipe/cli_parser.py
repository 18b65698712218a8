"""The argument parser of `nerfpipe`: every subcommand's options, help texts and examples.

It only describes the command line; nerfpipe.cli checks the parsed options and runs the command
(`args.command`). Options a subcommand keeps for older command lines but does not use are
accepted and hidden from its --help (IGNORED).
"""

from __future__ import annotations

import argparse
import textwrap
from typing import NoReturn

from nerfpipe import __version__
from nerfpipe import progress as progress_mod

# The top-level --help's first line.
DESCRIPTION = "`nerfpipe STAGE ...`: one subcommand per workflow stage."

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


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line, `nerfpipe CMD: error: ...`, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


DEVICE_HELP = "torch device: cpu, cuda or cuda:N (default: cuda if available, else cpu)"


def _epilog(command: str) -> str:
    return "\n".join(["examples:", *(f"  {example}" for example in EXAMPLES[command])])


def build_parser() -> argparse.ArgumentParser:
    """The `nerfpipe` parser; `args.command` names the subcommand to run."""
    parser = _Parser(prog="nerfpipe", description=DESCRIPTION,
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

    def add(name: str, helptext: str, *, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=helptext, description=textwrap.fill(description, 90),
                              epilog=_epilog(name), formatter_class=argparse.RawDescriptionHelpFormatter)

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
    p = add("data", "generate or load a scene into results/data/{scene}",
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
    p = add("rays", "precompute the training rays of a scene",
            description="Precompute one ray per training pixel of a scene (results/rays/{scene}).")
    p.add_argument("--data", metavar="DIR", help=f"the scene's data folder ({paths_note()})")
    p.add_argument("--out", metavar="DIR", help=f"output folder ({paths_note()})")
    p.add_argument("--config", metavar="FILE", help="config file (YAML) whose results root holds the "
                   "default folders (with --scene)")
    names(p, "scene name, for the default folders with --config")
    hidden(p, "rays")

    # ------------------------------------------------------------------ train
    p = add("train", "train one variant on one scene",
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
    for name, helptext, description, settings_help, config_help in (
        ("evaluate", "render and measure the test split",
         "Render every test view of a trained run and measure it: metrics.json, per_image.csv, "
         "weights.json, renders/.",
         "output options as a JSON object of eval_chunk, render_depth, render_normal (what the workflow "
         "passes; default: those the run was trained with)",
         "the variant's output options and the default folders (with --scene and --variant)"),
        ("render", "render the orbit videos",
         "Render a trained run along an orbit: orbit_rgb.mp4, orbit_rgb.gif, orbit_depth.gif, "
         "orbit_normal.gif.",
         "render options as a JSON object of frames, elevation_deg, radius, fps, resolution_scale and "
         "optionally eval_chunk (what the workflow passes; default: the schema's defaults)",
         "the render section and the default folders (with --scene and --variant)"),
    ):
        p = add(name, helptext, description=description)
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
    p = add("report", "build the comparison report",
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
    p = add("readme", "copy the report's table into README.md",
            description="Copy the comparison table of a report into README.md, between its demo-table "
            "markers.")
    p.add_argument("--report", default="results/report/report.md", metavar="FILE",
                   help="the report to copy from (default: %(default)s)")
    p.add_argument("--readme", default="README.md", metavar="FILE",
                   help="the README to write into (default: %(default)s)")
    for command, p in sub.choices.items():
        messages(p, command)
    return parser
