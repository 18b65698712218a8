"""The report's manifest: its settings and, per run, the paths of the files the report reads.

    {"scenes": [...], "variants": [...], "seeds": [...], "baseline": "nerf",
     "ablations": {ablation: base, ...},
     "claims": [{"id", "paper", "claim", "metric", "variant", "comparator", "direction",
                 optional "scenes", "margin", "note"}, ...],     (optional: none when absent)
     "runs": [{"scene", "variant", "seed", "summary", "train_log", "config", "metrics",
               "per_image", "weights", "renders", "rgb_gif", "depth_gif", "normal_gif",
               "rgb_mp4"}, ...]}     (paths; relative ones from the current folder)

The workflow's `report_manifest` rule writes it from its declared inputs (`write_manifest`); by
hand, `manifest_from_config` / `manifest_from_results` build the same from nerfpipe.layout.
`check_manifest` turns it into a `Manifest`, naming the source and the key of any error. The claims
(the config's `claims:`, see nerfpipe.reporting.claims) are left out of a manifest that has none.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nerfpipe.errors import NerfpipeError
from nerfpipe.io import parse_json, read_json, write_json, write_text
from nerfpipe.layout import EVAL_FILES, EVAL_RENDERS, NAME_RE, RENDER_FILES, TRAIN_FILES, run_dir, run_rel
from nerfpipe.reporting.claims import check_claims

# What the report reads of one run, by manifest key: the layout's file names (nerfpipe.layout)
# and the stage folder each lies in. `renders` is a folder (evaluation renders), the rest files.
RUN_FILES: dict[str, tuple[str, str]] = {
    "summary": ("train", TRAIN_FILES["summary"]),
    "train_log": ("train", TRAIN_FILES["train_log"]),
    "config": ("train", TRAIN_FILES["config"]),
    "metrics": ("eval", EVAL_FILES["metrics"]),
    "per_image": ("eval", EVAL_FILES["per_image"]),
    "weights": ("eval", EVAL_FILES["weights"]),
    "renders": ("eval", EVAL_RENDERS),
    "rgb_gif": ("render", RENDER_FILES["rgb_gif"]),
    "depth_gif": ("render", RENDER_FILES["depth_gif"]),
    "normal_gif": ("render", RENDER_FILES["normal_gif"]),
    "rgb_mp4": ("render", RENDER_FILES["rgb_mp4"]),
}
RUN_FOLDERS = ("renders",)
NULLABLE_FILES = ("normal_gif",)  # null: that run has no normals GIF
SETTINGS_KEYS = ("scenes", "variants", "seeds", "baseline", "ablations")
MANIFEST_KEYS = (*SETTINGS_KEYS, "runs")
OPTIONAL_MANIFEST_KEYS = ("claims",)
RUN_KEYS = ("scene", "variant", "seed", *RUN_FILES)

RunKey = tuple[str, str, int]


@dataclass(frozen=True)
class Manifest:
    """A checked report manifest: the settings and, per run, the paths of the files it reads."""

    source: str  # where it came from (the manifest file, "--settings", ...), for error messages
    scenes: list[str]
    variants: list[str]
    seeds: list[int]
    baseline: str
    ablations: dict[str, str]
    runs: dict[RunKey, dict[str, Path | None]]  # in the manifest's order
    claims: list[dict[str, Any]] = field(default_factory=list)  # reporting.claims; none: no section

    def files(self, scene: str, variant: str, seed: int) -> dict[str, Path | None]:
        return self.runs[(scene, variant, seed)]

    def inputs(self) -> list[Path]:
        """Every path the manifest names (files and folders)."""
        return [path for files in self.runs.values() for path in files.values() if path is not None]


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NerfpipeError(f"{where}: expected a JSON object, got {_kind(value)}")
    return value


def _keys(obj: dict[str, Any], where: str, required: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    missing = [k for k in required if k not in obj]
    if missing:
        raise NerfpipeError(f"{where}: missing key(s) {', '.join(missing)}")
    unknown = [str(k) for k in obj if k not in allowed]
    if unknown:
        raise NerfpipeError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise NerfpipeError(f"{where}: expected a non-empty list of names, got {_kind(value)} {value!r}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise NerfpipeError(f"{where}[{i}]: {name!r} is not a name (letters, digits and underscores)")
    _no_repeats(value, where)
    return list(value)


def _no_repeats(values: list[Any], where: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise NerfpipeError(f"{where}: {value!r} is listed twice")
        seen.add(value)


def check_settings(value: Any, source: str, ablations_required: bool = False) -> dict[str, Any]:
    """The report settings {"scenes", "variants", "seeds", "baseline", "ablations"} checked:
    a NerfpipeError naming `source` and the key on a missing key, wrong type or unknown name.
    `ablations` (ablation variant -> its base) defaults to none unless `ablations_required`."""
    obj = _object(value, source)
    required = SETTINGS_KEYS if ablations_required else SETTINGS_KEYS[:-1]
    _keys(obj, source, required, SETTINGS_KEYS)
    scenes = _names(obj["scenes"], f"{source}: scenes")
    variants = _names(obj["variants"], f"{source}: variants")
    seeds = obj["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise NerfpipeError(f"{source}: seeds: expected a non-empty list of integers, got {_kind(seeds)}")
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise NerfpipeError(f"{source}: seeds[{i}]: expected an integer >= 0, got {seed!r}")
    _no_repeats(seeds, f"{source}: seeds")
    baseline = obj["baseline"]
    if not isinstance(baseline, str) or baseline not in variants:
        raise NerfpipeError(f"{source}: baseline: {baseline!r} is not one of the variants {variants}")
    ablations = _object(obj.get("ablations", {}), f"{source}: ablations")
    for ablation, base in ablations.items():
        for role, name in (("ablation", ablation), ("base", base)):
            if name not in variants:
                raise NerfpipeError(
                    f"{source}: ablations: {role} {name!r} is not one of the variants {variants}"
                )
        if ablation == base:
            raise NerfpipeError(f"{source}: ablations: {ablation!r} is its own base")
    return {"scenes": scenes, "variants": variants, "seeds": list(seeds), "baseline": baseline,
            "ablations": dict(ablations)}


def parse_settings(text: str, source: str = "--settings") -> dict[str, Any]:
    """check_settings of a JSON string (what `nerfpipe report --settings` receives)."""
    return check_settings(parse_json(text, source), source)


def check_manifest(value: Any, source: str) -> Manifest:
    """A manifest (JSON object) checked: the settings (check_settings), and `runs` listing every
    scene x variant x seed exactly once with a path (a non-empty string) for every key of RUN_FILES.
    Errors name `source` and the key, e.g. `report.json: runs[3].weights: ...`."""
    if isinstance(value, Manifest):
        return value
    obj = _object(value, source)
    _keys(obj, source, MANIFEST_KEYS, (*MANIFEST_KEYS, *OPTIONAL_MANIFEST_KEYS))
    settings = check_settings({k: obj[k] for k in SETTINGS_KEYS}, source, ablations_required=True)
    scenes, variants, seeds = settings["scenes"], settings["variants"], settings["seeds"]
    claims = check_claims(obj.get("claims", []), variants, scenes, f"{source}: claims")
    entries = obj["runs"]
    if not isinstance(entries, list):
        raise NerfpipeError(f"{source}: runs: expected a list of run objects, got {_kind(entries)}")
    runs: dict[RunKey, dict[str, Path | None]] = {}
    for i, entry in enumerate(entries):
        where = f"{source}: runs[{i}]"
        _keys(_object(entry, where), where, RUN_KEYS, RUN_KEYS)
        for key, allowed in (("scene", scenes), ("variant", variants), ("seed", seeds)):
            value = entry[key]
            if type(value) is not type(allowed[0]) or value not in allowed:  # no 0.0 or True for 0
                raise NerfpipeError(f"{where}.{key}: {value!r} is not one of the {key}s {allowed}")
        run = (entry["scene"], entry["variant"], entry["seed"])
        if run in runs:
            raise NerfpipeError(f"{where}: run {run_rel(*run)} is listed twice")
        files: dict[str, Path | None] = {}
        for key in RUN_FILES:
            path = entry[key]
            if path is None and key in NULLABLE_FILES:
                files[key] = None
            elif isinstance(path, str) and path:
                files[key] = Path(path)
            else:
                raise NerfpipeError(f"{where}.{key}: expected a path (a non-empty string), got {path!r}")
        runs[run] = files
    absent = [run_rel(*r) for r in itertools.product(scenes, variants, seeds) if r not in runs]
    if absent:
        more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
        raise NerfpipeError(
            f"{source}: runs: no entry for {', '.join(absent[:3])}{more} (every scene x variant x seed "
            "must be listed)"
        )
    return Manifest(source=source, runs=runs, claims=claims, **settings)


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest file (what the workflow's report_manifest rule writes)."""
    return check_manifest(read_json(path), str(path))


def manifest_from_results(
    results_dir: str | Path,
    scenes: list[str],
    variants: list[str],
    seeds: list[int],
    baseline: str,
    ablations: dict[str, str] | None = None,
    source: str = "report",
    claims: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest of runs laid out below `results_dir` as nerfpipe.layout places them (what the
    workflow's report_manifest rule writes from its declared inputs), as a JSON-ready dict;
    `claims` (reporting.claims) go in when there are any."""
    settings = check_settings(
        {"scenes": scenes, "variants": variants, "seeds": seeds, "baseline": baseline,
         "ablations": dict(ablations or {})},
        source,
    )
    runs = []
    for scene, variant, seed in itertools.product(
        settings["scenes"], settings["variants"], settings["seeds"]
    ):
        entry: dict[str, Any] = {"scene": scene, "variant": variant, "seed": seed}
        for key, (stage, name) in RUN_FILES.items():
            entry[key] = str(run_dir(results_dir, stage, scene, variant, seed) / name)
        runs.append(entry)
    return {**settings, **_claims(claims, settings, source), "runs": runs}


def manifest_from_config(cfg: dict[str, Any], results: str | Path | None = None,
                         source: str = "config") -> dict[str, Any]:
    """manifest_from_results for a loaded config (nerfpipe.config.load_config): its scenes,
    variants, seeds, report.baseline, ablations (variants with `base:`) and claims, below
    `results` (default: the config's results root)."""
    return manifest_from_results(
        cfg["results"] if results is None else results,
        list(cfg["scenes"]),
        list(cfg["variants"]),
        list(cfg["seeds"]),
        cfg["report"]["baseline"],
        {name: v["base"] for name, v in cfg["variants"].items() if "base" in v},
        source=source,
        claims=cfg.get("claims", []),
    )


def manifest_from_inputs(settings: str | dict[str, Any], inputs: dict[str, Any],
                         claims: str | list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The manifest the workflow's report_manifest rule writes: `settings` (its params, JSON),
    `claims` (its params, JSON; left out when none) and one run per scene x variant x seed in
    expand order, taking the i-th file of each named input list (`inputs`: RUN_FILES key -> the
    rule's input list for that key)."""
    source = "report_manifest"
    if isinstance(settings, str):
        settings = parse_settings(settings, f"{source}: params.settings")
    settings = check_settings(settings, f"{source}: params.settings", ablations_required=True)
    _keys(dict(inputs), f"{source}: input", tuple(RUN_FILES), tuple(RUN_FILES))
    order = list(itertools.product(settings["scenes"], settings["variants"], settings["seeds"]))
    lists: dict[str, list[str]] = {}
    for key, files in inputs.items():
        files = [files] if isinstance(files, (str, Path)) else list(files)
        if len(files) != len(order):
            raise NerfpipeError(f"{source}: input {key}: {len(files)} files for {len(order)} runs")
        lists[key] = [str(f) for f in files]
    runs = [
        {"scene": scene, "variant": variant, "seed": seed, **{key: lists[key][i] for key in RUN_FILES}}
        for i, (scene, variant, seed) in enumerate(order)
    ]
    if isinstance(claims, str):
        claims = parse_json(claims, f"{source}: params.claims")
    return {**settings, **_claims(claims, settings, f"{source}: params"), "runs": runs}


def _claims(claims: Any, settings: dict[str, Any], source: str) -> dict[str, Any]:
    """{"claims": [...]} checked against the settings, or {} when there are none."""
    if not claims:
        return {}
    return {"claims": check_claims(claims, settings["variants"], settings["scenes"], f"{source}: claims")}


def write_manifest(path: str | Path, settings: str | dict[str, Any], inputs: dict[str, Any],
                   log: str | Path | None = None, claims: str | list[dict[str, Any]] | None = None) -> None:
    """manifest_from_inputs written to `path` (JSON), with a one-line note in `log`."""
    manifest = manifest_from_inputs(settings, inputs, claims)
    write_json(path, manifest)
    if log is not None:
        claims_note = f", {len(manifest['claims'])} claims" if "claims" in manifest else ""
        write_text(log, f"report_manifest: {len(manifest['runs'])} runs{claims_note} -> {path}\n")


def check_inputs(m: Manifest) -> None:
    """Every file the manifest names exists (a folder for RUN_FOLDERS), before anything is written."""
    for i, files in enumerate(m.runs.values()):
        for key, path in files.items():
            if path is None:
                continue
            folder = key in RUN_FOLDERS
            if not (path.is_dir() if folder else path.is_file()):
                what = "folder" if folder else "file"
                raise NerfpipeError(
                    f"{path}: {what} not found (needed by the report; {m.source}: runs[{i}].{key})"
                )
