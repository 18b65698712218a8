"""The package's import graph has no cycle, counting imports inside functions too (a function-level
import that hides a cycle is still a cycle for the reader)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nerfpipe"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the nerfpipe modules it imports (a package import counts as its __init__)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
                    base = base.rstrip(".")
                # `from pkg import mod` imports the module pkg.mod when it exists.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_known_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "nerfpipe.cameras" in graph["nerfpipe.stages.rays"]
    assert "nerfpipe.data.splits" in graph["nerfpipe.stages.rays"]
    assert "nerfpipe.stages.train" in graph["nerfpipe.cli"]  # imported inside a function
    assert "nerfpipe.reporting.collect" in graph["nerfpipe.reporting.build"]  # `from pkg import mod`


def test_nerfpipe_has_no_import_cycle():
    assert cycles(import_graph()) == []


STAGES = {"data", "rays", "train", "evaluate", "render", "report"}


def test_the_six_stages_are_the_modules_of_one_subpackage():
    names = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__"}
    assert names == STAGES


def test_stages_import_blocks_never_each_other():
    """A stage reads another stage's output through a block (nerfpipe.data.splits, nerfpipe.raycache,
    nerfpipe.inference), never by importing it; blocks never import a stage; only the CLI calls them."""
    graph = import_graph()
    stage_modules = {f"nerfpipe.stages.{s}" for s in STAGES}
    for stage in sorted(stage_modules):
        assert not graph[stage] & stage_modules, (stage, graph[stage] & stage_modules)
    callers = {m for m, deps in graph.items() if deps & stage_modules} - stage_modules
    assert callers == {"nerfpipe.cli"}, callers


def test_no_module_is_over_400_lines():
    sizes = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {path: n for path, n in sizes.items() if n > 400} == {}
