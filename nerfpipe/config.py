"""Workflow configuration: loading, validation and variant resolution.

The schema (`workflow/schemas/config.schema.yaml`) is the one place that lists every key,
its type, bounds and default. `METHOD_DEFAULTS` holds the few hyperparameters in which a
method's paper setting differs from `train_defaults`. Resolution order for a variant:

    train_defaults  <-  METHOD_DEFAULTS[method]  <-  base chain (root first)  <-  the variant's own keys

so a variant is always a complete, flat dict of training settings. Everything that can be
checked before any work starts is checked here, with a message that names the file and the
key path (`variants.nerf.lr: -1 is less than or equal to the minimum of 0`).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from nerfpipe.errors import NerfpipeError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"

METHODS = ("nerf", "mipnerf", "mipnerf360", "refnerf")

# Per-method hyperparameters that differ from `train_defaults`.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "nerf": {},
    # mip-NeRF's IPE uses degrees 0..15 (Sec. 3.1 of the mip-NeRF paper): the Gaussian
    # attenuation removes the aliasing that forces NeRF to stop at L = 10.
    "mipnerf": {"pe_pos": 16},
    "mipnerf360": {},
    # Ref-NeRF predicts linear colour and tone-maps it to sRGB (Sec. 4 of the Ref-NeRF paper).
    "refnerf": {"srgb": True},
}

_MAX_ERRORS = 10  # schema errors listed in one message; more only bury the first
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")

_schema_cache: dict[str, Any] | None = None


def load_schema() -> dict[str, Any]:
    """The config JSON schema (a fresh deep copy; validation fills defaults into it)."""
    global _schema_cache
    if _schema_cache is None:
        if not SCHEMA_PATH.is_file():
            raise NerfpipeError(f"{SCHEMA_PATH}: config schema not found")
        _schema_cache = yaml.safe_load(SCHEMA_PATH.read_text())
    return copy.deepcopy(_schema_cache)


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config (safe_load), validate it, fill defaults and cross-check it.

    Raises NerfpipeError naming `path` and the offending key on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise NerfpipeError(f"{path}: config file not found")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise NerfpipeError(f"{path}: not valid YAML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise NerfpipeError(f"{path}: not a text file ({exc})") from exc
    return validate_config(cfg, source=str(path))


def validate_config(cfg: Any, source: str = "config") -> dict[str, Any]:
    """Validate an already-parsed config; return a deep copy with every default filled in."""
    if not isinstance(cfg, dict):
        raise NerfpipeError(f"{source}: the config must be a mapping of keys to values, "
                            f"got {type(cfg).__name__}")
    cfg = copy.deepcopy(cfg)
    _precheck_choices(cfg, source)
    schema = load_schema()
    errors = _schema_errors(cfg, schema)
    if errors:
        shown = "\n  ".join(errors[:_MAX_ERRORS])
        more = f"\n  ... and {len(errors) - _MAX_ERRORS} more" if len(errors) > _MAX_ERRORS else ""
        raise NerfpipeError(f"{source}: invalid config:\n  {shown}{more}")
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


TRAIN_EXTRA_KEYS = ("variant", "method", "seed", "scene", "dataset_name")


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
    errors = _schema_errors(settings, check)
    if errors:
        raise NerfpipeError(f"{source}: invalid training settings:\n  " + "\n  ".join(errors[:_MAX_ERRORS]))
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


def _precheck_choices(cfg: dict[str, Any], source: str) -> None:
    """Exactly-one-of checks whose schema (`oneOf`) messages would be unreadable."""
    for section, keys in (("scenes", ("synthetic", "path")), ("variants", ("method", "base"))):
        entries = cfg.get(section)
        if not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            given = [k for k in keys if k in entry]
            if len(given) != 1:
                what = "both" if given else "neither"
                raise NerfpipeError(
                    f"{source}: {section}.{name}: give exactly one of {keys[0]!r} or {keys[1]!r} "
                    f"({what} given)"
                )


def _schema_errors(cfg: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Validate `cfg` in place, filling schema defaults; return readable error lines."""
    import jsonschema

    validator_cls = _validator_with_defaults(jsonschema.Draft202012Validator)
    validator = validator_cls(schema)
    lines = []
    for error in sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        lines.append(f"{path}: {_message(error, schema)}")
    return lines


def _validator_with_defaults(validator_cls: Any) -> Any:
    """Extend a validator so `properties` fills each missing key's `default` (deep-copied)."""
    from jsonschema import validators

    validate_properties = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict, instance: Any, schema: dict) -> Any:
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_cls, {"properties": set_defaults})


def _message(error: Any, root: dict[str, Any]) -> str:
    """A jsonschema error message, with unknown keys named and a close match suggested."""
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(
        error.instance, dict
    ):
        allowed = _allowed_keys(error.schema, root)
        unknown = [k for k in error.instance if k not in allowed]
        if allowed and unknown:
            parts = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                parts.append(f"unknown key {key!r}{hint}")
            message = "; ".join(parts)
            if "did you mean" not in message:
                message += f"; allowed keys: {', '.join(sorted(allowed))}"
            return message
    if "propertyNames" in error.relative_schema_path:
        return f"name {error.instance!r} must match {_NAME_RE.pattern} (letters, digits, underscore)"
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and description:
        # A bare regular expression does not say what the value is for; the key's description does.
        return f"{error.message} (expected: {' '.join(description.split())})"
    return error.message


def _allowed_keys(schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """Property names a (sub)schema declares, following local `$ref`s."""
    keys = list(schema.get("properties", {}))
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        keys += _allowed_keys(target, root)
    return keys


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
