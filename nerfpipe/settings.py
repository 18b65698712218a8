"""Training, output, render and scene settings: which keys do what, and checks of settings that
arrive without a config (the CLI's --settings JSON, the workflow's params).

A variant's resolved settings (nerfpipe.config.resolve_variant) split by what they can change:
the weights (`weight_settings`), only the later stages' output (OUTPUT_KEYS), nothing learned
(TRAIN_RUNTIME_KEYS) or nothing at all (RECORD_ONLY_KEYS). Each check_* function raises a one-line
NerfpipeError naming the source (a flag) and the key.
"""

from __future__ import annotations

import copy
from typing import Any

from nerfpipe.config import METHOD_DEFAULTS, METHODS, check_estimator
from nerfpipe.errors import NerfpipeError
from nerfpipe.schema import MAX_ERRORS, NAME_RE, check_against, load_schema, precheck_choices, schema_errors

TRAIN_EXTRA_KEYS = ("variant", "method", "seed", "scene", "dataset_name")

# Training keys that cannot change the trained weights: how often to log and checkpoint (resume
# is bit-identical), when to give up on non-finite steps, and options of the later stages that
# the variant carries for them. They are left out of the train rule's rerun trigger and of the
# checkpoint fingerprint, so changing them never retrains.
TRAIN_RUNTIME_KEYS = ("log_every", "ckpt_every", "max_bad_steps")
OUTPUT_KEYS = ("eval_chunk", "render_depth", "render_normal")
# Recorded for people only (the original implementation's --dataset_name).
RECORD_ONLY_KEYS = ("dataset_name",)


# Settings that fix the shapes of the parameters (named when weights do not fit a model).
ARCHITECTURE_KEYS = ("method", "net_depth", "net_width", "net_depth_fine", "net_width_fine", "pe_pos",
                     "pe_dir", "prop_samples", "prop_net_depth", "prop_net_width", "deg_view",
                     "bottleneck_width", "dir_net_depth", "dir_net_width", "estimator", "occ_resolution")


# The sample estimator and the occupancy grid's keys: weight settings of an `estimator: occgrid` variant.
# With the default estimator (stratified) they cannot change the weights and are left out, so a run's
# identity (and the train rule's rerun trigger) is what it was before the estimator existed.
ESTIMATOR_KEYS = ("estimator", "occ_aabb", "occ_resolution", "occ_step_size", "occ_update_every",
                  "occ_warmup_iterations", "occ_threshold", "occ_ema_decay", "occ_early_stop_eps")


def weight_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The training settings that determine the weights (the rest: TRAIN_RUNTIME_KEYS, OUTPUT_KEYS,
    RECORD_ONLY_KEYS, and ESTIMATOR_KEYS unless the estimator is occgrid). Same settings + same inputs
    + same seed give the same weights on CPU."""
    skip = {*TRAIN_RUNTIME_KEYS, *OUTPUT_KEYS, *RECORD_ONLY_KEYS}
    if settings.get("estimator", "stratified") != "occgrid":
        skip.update(ESTIMATOR_KEYS)
    return {k: v for k, v in settings.items() if k not in skip}


def output_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The evaluate/render options a variant carries: chunk size and which images to write."""
    return {k: settings[k] for k in OUTPUT_KEYS if k in settings}


def check_train_settings(settings: dict[str, Any], source: str = "--settings") -> dict[str, Any]:
    """Check a flat training-settings dict (what `resolve_variant` returns) in place.

    Needs "method"; fills any missing training key the way `resolve_variant` would
    (train_defaults <- METHOD_DEFAULTS[method]), "variant" (the method) and "seed" (0), then
    checks every key's type and bounds against the schema. Returns `settings`.
    """
    if not isinstance(settings, dict):
        raise NerfpipeError(f"{source}: expected a JSON object of training settings")
    method = settings.get("method")
    if method not in METHODS:
        raise NerfpipeError(f"{source}: method: {method!r} is not one of {', '.join(METHODS)}")
    schema = load_schema()
    defaults = {k: sub["default"] for k, sub in schema["properties"]["train_defaults"]["properties"].items()}
    defaults.update(METHOD_DEFAULTS[method])
    for key, value in defaults.items():
        settings.setdefault(key, copy.deepcopy(value))
    settings.setdefault("variant", method)
    settings.setdefault("seed", 0)
    if settings.get("sampling_backend") is None:
        settings["sampling_backend"] = "auto"
    check = {
        "$ref": "#/$defs/train_settings",
        "type": "object",
        "properties": {
            "variant": {"type": "string", "minLength": 1},
            "method": {"enum": list(METHODS)},
            "seed": {"type": "integer", "minimum": 0},
            "scene": {"type": "string"},
            "dataset_name": {"type": "string"},
        },
        "unevaluatedProperties": False,
        "$defs": schema["$defs"],
    }
    errors = schema_errors(settings, check)
    if errors:
        raise NerfpipeError(f"{source}: invalid training settings: " + "; ".join(errors[:MAX_ERRORS]))
    if not NAME_RE.match(settings["variant"]):
        raise NerfpipeError(f"{source}: variant: {settings['variant']!r} must match {NAME_RE.pattern}")
    check_estimator(settings, source)
    return settings


def check_output_options(options: Any, source: str = "--settings") -> dict[str, Any]:
    """Evaluate/render options (OUTPUT_KEYS) with the schema's types and bounds."""
    if not isinstance(options, dict):
        raise NerfpipeError(f"{source}: expected a JSON object of {', '.join(OUTPUT_KEYS)}")
    unknown = sorted(set(options) - set(OUTPUT_KEYS))
    if unknown:
        raise NerfpipeError(f"{source}: unknown key {unknown[0]!r}; evaluate takes {', '.join(OUTPUT_KEYS)}")
    for key, value in options.items():
        check_against(value, f"$defs/train_settings/properties/{key}", f"{source}: {key}")
    return options


def check_render_options(options: Any, source: str = "--settings") -> dict[str, Any]:
    """The config's `render` section (plus an optional eval_chunk), defaults filled in."""
    if not isinstance(options, dict):
        raise NerfpipeError(f"{source}: expected a JSON object of render options")
    options = dict(options)
    chunk = options.pop("eval_chunk", None)
    checked = copy.deepcopy(options)
    check_against(checked, "properties/render", source)
    if chunk is not None:
        checked["eval_chunk"] = check_against(chunk, "$defs/train_settings/properties/eval_chunk",
                                              f"{source}: eval_chunk")
    return checked


def check_scene_settings(scene: Any, source: str = "--settings") -> dict[str, Any]:
    """One scene's settings (what `resolve_scene` returns) against the schema."""
    if not isinstance(scene, dict):
        raise NerfpipeError(f"{source}: expected a JSON object of scene settings")
    scene = copy.deepcopy(scene)
    name = scene.pop("scene", None)
    if name is not None and not (isinstance(name, str) and NAME_RE.match(name)):
        raise NerfpipeError(f"{source}: scene: {name!r} must match {NAME_RE.pattern}")
    precheck_choices({"scenes": {"scene": scene}}, source)
    check_against(scene, "$defs/scene", source)
    if "near" in scene and "far" in scene and not scene["near"] < scene["far"]:
        raise NerfpipeError(f"{source}: near ({scene['near']}) must be less than far ({scene['far']})")
    if name is not None:
        scene["scene"] = name
    return scene
