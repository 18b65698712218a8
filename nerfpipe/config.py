"""Workflow configuration: loading, validation and variant resolution.

The schema (`workflow/schemas/config.schema.yaml`, read by nerfpipe.schema) is the one place that
lists every key, its type, bounds and default. `METHOD_DEFAULTS` holds the few hyperparameters in
which a method's paper setting differs from `train_defaults`. Resolution order for a variant:

    train_defaults  <-  METHOD_DEFAULTS[method]  <-  base chain (root first)  <-  the variant's own keys

so a variant is always a complete, flat dict of training settings. Everything that can be
checked before any work starts is checked here, with a message that names the file and the
key path (`variants.nerf.lr: -1 is less than or equal to the minimum of 0`). The file itself is
read strictly by nerfpipe.config_yaml; nerfpipe.settings says which resolved keys do what.
"""

from __future__ import annotations

import copy
import os
from pathlib import PurePosixPath
from typing import Any

from nerfpipe.config_yaml import read_config_file
from nerfpipe.errors import NerfpipeError
from nerfpipe.protocol import MULTISCALE_FACTORS, MULTISCALE_MIN_SIDE, SSIM_WINDOW, fits_multiscale
from nerfpipe.schema import MAX_ERRORS, load_schema, precheck_choices, schema_errors

METHODS = ("nerf", "mipnerf", "mipnerf360", "refnerf", "refnerf_paper")

# Per-method hyperparameters that differ from `train_defaults`.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "nerf": {},
    # mip-NeRF's IPE uses degrees 0..15 (Sec. 3.1 of the mip-NeRF paper): the Gaussian
    # attenuation removes the aliasing that forces NeRF to stop at L = 10.
    "mipnerf": {"pe_pos": 16},
    "mipnerf360": {},
    # Ref-NeRF predicts linear colour and tone-maps it to sRGB (Sec. 4 of the Ref-NeRF paper).
    "refnerf": {"srgb": True},
    # Ref-NeRF as in the paper's Blender / Shiny Blender runs (multinerf configs/blender_refnerf.gin):
    # one MLP at two levels, IPE degrees 0..15, an 8x128 directional MLP, density softplus(x + 0.5). Its
    # other settings are train_defaults: coarse data loss x0.1, resampling padding 0.01, orientation /
    # predicted-normal losses 0.1 / 3e-4 on the fine level and 0.01 / 3e-5 on the coarse one.
    "refnerf_paper": {"srgb": True, "pe_pos": 16, "dir_net_depth": 8, "dir_net_width": 128,
                      "density_bias": 0.5},
}

# The methods each sample estimator is built for (`estimator` key). occgrid: the point-sample methods NeRF
# and mip-NeRF (its marched intervals cast as conical frustums); the proposal methods would need a grid in
# place of (or beside) their proposal levels.
ESTIMATOR_METHODS: dict[str, tuple[str, ...]] = {"stratified": METHODS, "occgrid": ("nerf", "mipnerf")}


def check_estimator(settings: dict[str, Any], where: str) -> None:
    """Refuse an estimator on a method it is not built for, and an empty `occ_aabb` (one NerfpipeError
    naming `where`, e.g. `config.yaml: variants.mip_occ`)."""
    estimator = settings.get("estimator", "stratified")
    method = settings.get("method")
    if method not in ESTIMATOR_METHODS.get(estimator, ()):
        built = ", ".join(ESTIMATOR_METHODS.get(estimator, ()))
        raise NerfpipeError(f"{where}: estimator {estimator} is built for method {built} only, not yet for "
                            f"{method} (variant {settings.get('variant', '?')}); use estimator: stratified")
    aabb = settings.get("occ_aabb")
    if aabb is not None and not all(aabb[i] < aabb[i + 3] for i in range(3)):
        raise NerfpipeError(f"{where}: occ_aabb: {aabb} must be (x0, y0, z0, x1, y1, z1) with x0 < x1, "
                            "y0 < y1 and z0 < z1")


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config (safe loader), validate it, fill defaults and cross-check it.

    A duplicated key at any level (YAML would silently keep the last one) and any syntax error
    are refused with one line naming `path`, the line and column; tags that construct Python
    objects are refused as by yaml.safe_load. Raises NerfpipeError naming `path` and the
    offending key on any problem.
    """
    return validate_config(read_config_file(path), source=str(path))


def validate_config(cfg: Any, source: str = "config") -> dict[str, Any]:
    """Validate an already-parsed config; return a deep copy with every default filled in."""
    if not isinstance(cfg, dict):
        raise NerfpipeError(f"{source}: the config must be a mapping of keys to values, "
                            f"got {type(cfg).__name__}")
    cfg = copy.deepcopy(cfg)
    precheck_choices(cfg, source)
    schema = load_schema()
    errors = schema_errors(cfg, schema)
    if errors:
        shown = "; ".join(errors[:MAX_ERRORS])
        more = f"; ... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise NerfpipeError(f"{source}: invalid config: {shown}{more}")
    _cross_check(cfg, source)
    return cfg


def resolve_variant(cfg: dict[str, Any], name: str, seed: int | None = None) -> dict[str, Any]:
    """Fully resolved training settings of variant `name`.

    Returns every `train_defaults` key plus "variant", "method", "seed" (the first configured
    seed when None) and "sampling_backend" resolved against the top-level setting.
    `cfg` must have been validated (defaults filled).
    """
    chain = _base_chain(cfg, name)
    method = cfg["variants"][chain[0]]["method"]
    settings = copy.deepcopy(cfg["train_defaults"])
    settings.update(copy.deepcopy(METHOD_DEFAULTS[method]))
    for link in chain:
        overrides = {k: v for k, v in cfg["variants"][link].items() if k not in ("method", "base")}
        settings.update(copy.deepcopy(overrides))
    if settings.get("sampling_backend") is None:
        settings["sampling_backend"] = cfg["sampling_backend"]
    settings["variant"] = name
    settings["method"] = method
    settings["seed"] = int(cfg["seeds"][0] if seed is None else seed)
    return settings


def resolve_scene(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """Scene settings: `scene_defaults` overridden by the scene's own keys, plus "scene"."""
    scenes = cfg.get("scenes", {})
    if name not in scenes:
        raise NerfpipeError(f"scene {name!r} is not configured; known scenes: {', '.join(scenes) or 'none'}")
    settings = copy.deepcopy(cfg["scene_defaults"])
    settings.update(copy.deepcopy(scenes[name]))
    settings["scene"] = name
    return settings


def ablation_diff(cfg: dict[str, Any], name: str) -> dict[str, tuple[Any, Any]]:
    """Settings in which variant `name` differs from its `base`: key -> (base value, value).

    Empty for a variant without a base (it is not an ablation of anything).
    """
    variant = _variant(cfg, name)
    base = variant.get("base")
    if base is None:
        return {}
    ignore = {"variant"}
    mine = resolve_variant(cfg, name)
    theirs = resolve_variant(cfg, base)
    return {k: (theirs[k], mine[k]) for k in mine if k not in ignore and mine[k] != theirs[k]}


# --------------------------------------------------------------------------- internals


def _variant(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    variants = cfg.get("variants", {})
    if name not in variants:
        raise NerfpipeError(
            f"variant {name!r} is not configured; known variants: {', '.join(variants) or 'none'}"
        )
    return variants[name]


def _base_chain(cfg: dict[str, Any], name: str) -> list[str]:
    """[root, ..., name] following `base:` links; errors on unknown or cyclic bases."""
    chain = [name]
    variant = _variant(cfg, name)
    while "base" in variant:
        base = variant["base"]
        if base in chain:
            cycle = " -> ".join([*reversed(chain), base])
            raise NerfpipeError(f"variants.{chain[-1]}.base: cyclic base chain ({cycle})")
        if base not in cfg["variants"]:
            raise NerfpipeError(
                f"variants.{chain[-1]}.base: unknown variant {base!r}; "
                f"known variants: {', '.join(cfg['variants'])}"
            )
        chain.append(base)
        variant = cfg["variants"][base]
    return list(reversed(chain))


def _cross_check(cfg: dict[str, Any], source: str) -> None:
    """Checks that span several keys (run after the schema, so types are known good)."""
    results = cfg["results"]
    pure = PurePosixPath(results)
    if pure.is_absolute() or ".." in pure.parts or str(pure) in ("", ".") or "\\" in results:
        raise NerfpipeError(
            f"{source}: results: {results!r} must be a relative path inside the working directory "
            "without '..' (the pipeline writes nothing outside it)"
        )
    try:
        for name in cfg["variants"]:
            _base_chain(cfg, name)
    except NerfpipeError as exc:
        raise NerfpipeError(f"{source}: {exc}") from None
    for name in cfg["variants"]:
        check_estimator(resolve_variant(cfg, name), f"{source}: variants.{name}")

    baseline = cfg["report"]["baseline"]
    if baseline not in cfg["variants"]:
        raise NerfpipeError(
            f"{source}: report.baseline: {baseline!r} is not a configured variant; "
            f"known variants: {', '.join(cfg['variants'])}"
        )
    for name in cfg["scenes"]:
        scene = resolve_scene(cfg, name)
        if not scene["near"] < scene["far"]:
            raise NerfpipeError(
                f"{source}: scenes.{name}: near ({scene['near']}) must be less than far ({scene['far']})"
            )
        if scene.get("multiscale") and "synthetic" in scene:
            # The data stage downscales generated scenes too: it writes resolution // downscale pixels.
            _check_multiscale_resolution(scene["resolution"] // scene.get("downscale", 1),
                                         f"{source}: scenes.{name}")
    _check_claims(cfg, source)


def _check_multiscale_resolution(resolution: int, where: str) -> None:
    """A multiscale scene's images are box-filtered down to 1/8 (whole blocks), and the 1/8 images must
    hold the SSIM window of evaluation."""
    if not fits_multiscale(resolution, resolution):
        factor, side, w = MULTISCALE_FACTORS[-1], MULTISCALE_MIN_SIDE, SSIM_WINDOW
        raise NerfpipeError(f"{where}: multiscale needs a resolution (after downscale) divisible by {factor} "
                            f"and at least {side} (the 1/{factor} scale must hold the {w}x{w} SSIM window), "
                            f"got {resolution}")


def _check_claims(cfg: dict[str, Any], source: str) -> None:
    """Each claim's variants and scenes are configured and its id is unique; errors name the claim."""
    ids: set[str] = set()
    for i, claim in enumerate(cfg.get("claims", [])):
        where = f"{source}: claims.{i} ({claim['id']})"
        if claim["id"] in ids:
            raise NerfpipeError(f"{where}: id {claim['id']!r} names an earlier claim too")
        ids.add(claim["id"])
        for role in ("variant", "comparator"):
            if claim[role] not in cfg["variants"]:
                raise NerfpipeError(f"{where}: {role} {claim[role]!r} is not a configured variant; "
                                    f"known variants: {', '.join(cfg['variants'])}")
        if claim["variant"] == claim["comparator"]:
            raise NerfpipeError(f"{where}: variant and comparator are both {claim['variant']!r}")
        for scene in claim.get("scenes", []):
            if scene not in cfg["scenes"]:
                raise NerfpipeError(f"{where}: scenes: {scene!r} is not a configured scene; "
                                    f"known scenes: {', '.join(cfg['scenes'])}")
