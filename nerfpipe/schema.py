"""The config schema (`workflow/schemas/config.schema.yaml`) and validation against it.

The schema is the one place that lists every key, its type, bounds and default. Validation fills
each missing key's default in place and turns jsonschema's errors into one readable line per
problem, naming the key path (`variants.nerf.lr: -1 is less than or equal to the minimum of 0`),
unknown keys with a close match (`unknown key 'lrr' (did you mean 'lr'?)`) and NaN or infinity,
which JSON schema's "number" would admit.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from pathlib import Path
from typing import Any

import yaml

from nerfpipe.errors import NerfpipeError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"

MAX_ERRORS = 10  # schema errors listed in one message; more only bury the first
NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")

_schema_cache: dict[str, Any] | None = None


def load_schema() -> dict[str, Any]:
    """The config JSON schema (a fresh deep copy; validation fills defaults into it)."""
    global _schema_cache
    if _schema_cache is None:
        if not SCHEMA_PATH.is_file():
            raise NerfpipeError(f"{SCHEMA_PATH}: config schema not found")
        _schema_cache = yaml.safe_load(SCHEMA_PATH.read_text())
    return copy.deepcopy(_schema_cache)


def schema_defaults(section: str) -> dict[str, Any]:
    """The schema's default of every key of a top-level section (e.g. "scene_defaults", "render"):
    the one definition of those defaults, for code that runs without a validated config."""
    schema = load_schema()
    return {key: copy.deepcopy(sub["default"])
            for key, sub in schema["properties"][section]["properties"].items() if "default" in sub}


def schema_errors(cfg: Any, schema: dict[str, Any]) -> list[str]:
    """Validate `cfg` in place, filling schema defaults; return readable error lines."""
    import jsonschema

    validator_cls = _validator_with_defaults(jsonschema.Draft202012Validator)
    validator = validator_cls(schema)
    lines = [f"{path}: {value!r} is not a finite number" for path, value in _non_finite(cfg)]
    for error in sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        lines.append(f"{path}: {_message(error, schema)}")
    return lines


def check_against(value: Any, pointer: str, label: str) -> Any:
    """Check `value` against the schema node at `pointer` (e.g. "$defs/train_settings/properties/lr");
    raise a one-line NerfpipeError naming `label` (a flag or key) on failure. Returns `value`."""
    schema = load_schema()
    node: Any = schema
    for part in pointer.split("/"):
        node = node[part]
    errors = schema_errors(value, {**node, "$defs": schema["$defs"]})
    if errors:
        detail = "; ".join(e.split(": ", 1)[1] if e.startswith("(top level): ") else e for e in errors)
        raise NerfpipeError(f"{label}: {detail}")
    return value


def precheck_choices(cfg: dict[str, Any], source: str) -> None:
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


# --------------------------------------------------------------------------- internals


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
        return f"name {error.instance!r} must match {NAME_RE.pattern} (letters, digits, underscore)"
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
