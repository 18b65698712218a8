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
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from nerfpipe.errors import NerfpipeError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"

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
    """Read a YAML config (safe loader), validate it, fill defaults and cross-check it.

    A duplicated key at any level (YAML would silently keep the last one) and any syntax error
    are refused with one line naming `path`, the line and column; tags that construct Python
    objects are refused as by yaml.safe_load. Raises NerfpipeError naming `path` and the
    offending key on any problem.
    """
    return validate_config(read_config_file(path), source=str(path))


def read_config_file(path: str | os.PathLike) -> Any:
    """Parse a YAML config file strictly (see load_config) without validating it. The workflow
    calls this on its --configfile too: Snakemake's own YAML reading lets a duplicated key win."""
    path = Path(path)
    if not path.is_file():
        raise NerfpipeError(f"{path}: config file not found")
    try:
        cfg = _load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise NerfpipeError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise NerfpipeError(f"{path}: not a text file ({exc})") from exc
    except RecursionError as exc:
        raise NerfpipeError(f"{path}: not valid YAML: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer beyond Python's int/str conversion limit
        raise NerfpipeError(f"{path}: not valid YAML: {_one_line(str(exc))}") from exc
    return cfg


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice."""


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (at any level).

    Keys merged in with `<<: *anchor` may be overridden, as YAML intends; only keys written twice
    in the same mapping are refused. The message gives the dotted key path.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._key_paths: dict[int, str] = {}
        self._label_paths(node, "")
        return super().construct_document(node)

    def _label_paths(self, node: yaml.Node, prefix: str) -> None:
        """Record each mapping node's dotted key path (the first path, for a node reached twice)."""
        stack = [(node, prefix)]
        while stack:
            current, where = stack.pop()
            if id(current) in self._key_paths:
                continue
            self._key_paths[id(current)] = where
            if isinstance(current, yaml.MappingNode):
                for key_node, value_node in current.value:
                    label = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                    stack.append((value_node, f"{where}.{label}" if where else str(label)))
            elif isinstance(current, yaml.SequenceNode):
                for i, item in enumerate(current.value):
                    stack.append((item, f"{where}[{i}]"))

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable: the base class reports it
                    continue
                if first is not None:
                    parent = getattr(self, "_key_paths", {}).get(id(node), "")
                    dotted = f"{parent}.{key}" if parent else str(key)
                    raise _DuplicateKeyError(
                        None, None,
                        f"duplicate key {dotted!r} (first given at line {first.start_mark.line + 1}); "
                        "YAML would silently keep only the last one",
                        key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """pyyaml's multi-line message as one line: "line L, column C: problem (context at line L2)"."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        text = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
        if exc.context:
            ctx = exc.context
            if exc.context_mark is not None and exc.context_mark.line != mark.line:
                ctx += f" at line {exc.context_mark.line + 1}"
            text += f" ({ctx})"
        if "'\\t'" in str(exc.problem):
            text += "; indent with spaces, YAML does not allow tabs"
        elif "could not determine a constructor for the tag" in str(exc.problem):
            text += "; only plain YAML data is accepted (python tags are refused)"
        return _one_line(text)
    if isinstance(exc, yaml.reader.ReaderError):
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        return _one_line(f"position {exc.position}: unacceptable character {char}: {exc.reason}")
    return _one_line(str(exc))


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
        shown = "; ".join(errors[:_MAX_ERRORS])
        more = f"; ... and {len(errors) - _MAX_ERRORS} more" if len(errors) > _MAX_ERRORS else ""
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
        raise NerfpipeError(f"{source}: invalid training settings: " + "; ".join(errors[:_MAX_ERRORS]))
    if not _NAME_RE.match(settings["variant"]):
        raise NerfpipeError(f"{source}: variant: {settings['variant']!r} must match {_NAME_RE.pattern}")
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
    lines = [f"{path}: {value!r} is not a finite number" for path, value in _non_finite(cfg)]
    for error in sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        lines.append(f"{path}: {_message(error, schema)}")
    return lines


def _non_finite(value: Any, path: str = "") -> list[tuple[str, float]]:
    """(key path, value) of every NaN or infinity in a parsed config or settings object (JSON
    schema's "number" admits them; no setting of ours means anything with them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(path or "(top level)", value)]
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in _non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _non_finite(v, f"{path}.{i}" if path else str(i))]
    return []


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
                     "bottleneck_width", "dir_net_depth", "dir_net_width")


def weight_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The training settings that determine the weights (the rest: TRAIN_RUNTIME_KEYS, OUTPUT_KEYS,
    RECORD_ONLY_KEYS). Same settings + same inputs + same seed give the same weights on CPU."""
    skip = {*TRAIN_RUNTIME_KEYS, *OUTPUT_KEYS, *RECORD_ONLY_KEYS}
    return {k: v for k, v in settings.items() if k not in skip}


def output_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The evaluate/render options a variant carries: chunk size and which images to write."""
    return {k: settings[k] for k in OUTPUT_KEYS if k in settings}


def check_against(value: Any, pointer: str, label: str) -> Any:
    """Check `value` against the schema node at `pointer` (e.g. "$defs/train_settings/properties/lr");
    raise a one-line NerfpipeError naming `label` (a flag or key) on failure. Returns `value`."""
    schema = load_schema()
    node: Any = schema
    for part in pointer.split("/"):
        node = node[part]
    errors = _schema_errors(value, {**node, "$defs": schema["$defs"]})
    if errors:
        detail = "; ".join(e.split(": ", 1)[1] if e.startswith("(top level): ") else e for e in errors)
        raise NerfpipeError(f"{label}: {detail}")
    return value


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
    if name is not None and not (isinstance(name, str) and _NAME_RE.match(name)):
        raise NerfpipeError(f"{source}: scene: {name!r} must match {_NAME_RE.pattern}")
    _precheck_choices({"scenes": {"scene": scene}}, source)
    check_against(scene, "$defs/scene", source)
    if "near" in scene and "far" in scene and not scene["near"] < scene["far"]:
        raise NerfpipeError(f"{source}: near ({scene['near']}) must be less than far ({scene['far']})")
    if name is not None:
        scene["scene"] = name
    return scene


def schema_defaults(section: str) -> dict[str, Any]:
    """The schema's default of every key of a top-level section (e.g. "scene_defaults", "render"):
    the one definition of those defaults, for code that runs without a validated config."""
    schema = load_schema()
    return {key: copy.deepcopy(sub["default"])
            for key, sub in schema["properties"][section]["properties"].items() if "default" in sub}
