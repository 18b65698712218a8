"""Strict YAML reading of config files.

A config file is parsed with yaml.SafeLoader (tags that construct Python objects are refused)
extended to refuse a key given twice in one mapping, at any level: plain YAML would silently keep
the last one. Every problem becomes one line naming the file, the line and the column.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from nerfpipe.errors import NerfpipeError


def read_config_file(path: str | os.PathLike) -> Any:
    """Parse a YAML config file strictly (see nerfpipe.config.load_config) without validating it.
    The workflow calls this on its --configfile too: Snakemake's own YAML reading lets a duplicated
    key win."""
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
