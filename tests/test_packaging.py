"""Packaging: pyproject.toml declares compatible ranges of every package nerfpipe imports;
constraints.txt pins each at the version tested, which is the version installed here; the conda
environment of the rules (Snakemake needs a file of its own) and the Makefile agree with it."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nerfpipe"
# Import names that differ from the name of the distribution that provides them.
DISTRIBUTION_OF = {"PIL": "pillow", "yaml": "pyyaml", "imageio_ffmpeg": "imageio-ffmpeg",
                   "skimage": "scikit-image"}
# Declared for the workflow or the build, not imported by the package.
NOT_IMPORTED = {"snakemake", "snakemake-executor-plugin-slurm", "pybind11"}
OPTIONAL_EXTRAS = ("tensorboard", "lpips")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    return canonical(re.match(r"[A-Za-z0-9_.-]+", req.strip()).group(0))


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared() -> dict[str, list[str]]:
    """group ("" = [project].dependencies, else the extra) -> requirement strings."""
    proj = project()
    return {"": proj["dependencies"], **proj["optional-dependencies"]}


def pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", line)
        if m:
            out[canonical(m.group(1))] = m.group(3)
    return out


def constraints() -> dict[str, str]:
    return pins((ROOT / "constraints.txt").read_text().splitlines())


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the package files importing it (function-level imports too)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "nerfpipe":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared() -> None:
    every = {requirement_name(r) for reqs in declared().values() for r in reqs}
    imports = third_party_imports()
    assert {"torch", "numpy", "PIL", "yaml", "lpips"} <= set(imports)  # the scan sees them
    for module, files in sorted(imports.items()):
        dist = canonical(DISTRIBUTION_OF.get(module, module))
        assert dist in every, f"{module} ({dist}) is imported by {sorted(files)} but not declared"
    runtime = {requirement_name(r) for r in declared()[""]}
    optional = {"lpips"}  # imported only where available (metrics.lpips_status)
    for module in imports:
        dist = canonical(DISTRIBUTION_OF.get(module, module))
        assert dist in runtime or dist in optional, f"{dist} is imported but only declared as an extra"


def oldest() -> dict[str, str]:
    return pins((ROOT / "constraints-oldest.txt").read_text().splitlines())


def lower_bounds() -> dict[str, str]:
    bounds = {}
    for group, reqs in declared().items():
        for req in reqs:
            m = re.fullmatch(r"[A-Za-z0-9_.-]+(\[[^\]]*\])?>=([^,;\s]+)(,<[^;\s]+)?", req.strip())
            assert m, f"[{group or 'dependencies'}] {req}: expected NAME>=TESTED[,<BROKEN]"
            bounds[requirement_name(req)] = m.group(2)
    return bounds


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def test_dependencies_are_ranges_from_the_tested_version() -> None:
    """Each lower bound is a tested version: the pin, or an older release of constraints-oldest.txt."""
    pinned, old = constraints(), oldest()
    assert old, "constraints-oldest.txt pins nothing"
    for name, bound in lower_bounds().items():
        tested = old.get(name, pinned.get(name))
        assert bound == tested, f"{name}>={bound}: lower bound is not the oldest tested {tested}"
    for name, version in old.items():
        assert version_key(version) < version_key(pinned[name]), f"{name}: {version} not older than the pin"
    assert "tensorboard" in declared() and "lpips" in declared() and "test" in declared()


def test_install_resolves_beside_the_oldest_numpy_and_pandas(tmp_path) -> None:
    """`pip install .` into an environment that holds older numpy and pandas (the lower bounds,
    not the pins) resolves: nerfpipe's ranges let it live beside other packages. A dry run with
    pip's resolver and the package index (no download of what it would install)."""
    old = oldest()
    report = tmp_path / "resolution.json"
    torch_version = installed("torch").split("+")[0]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation",
           "--quiet", "--report", str(report), str(ROOT), f"torch=={torch_version}",
           *(f"{name}=={version}" for name, version in old.items())]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    chosen = {canonical(item["metadata"]["name"]): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    assert "nerfpipe" in chosen
    for name, version in old.items():
        assert chosen[name] == version, (name, chosen.get(name))


def test_every_declared_dependency_has_a_pin() -> None:
    pinned = constraints()
    names = {requirement_name(r) for reqs in declared().values() for r in reqs}
    assert names <= set(pinned), f"no pin in constraints.txt: {sorted(names - set(pinned))}"
    assert set(pinned) <= names, f"pinned but not declared: {sorted(set(pinned) - names)}"


def installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def test_the_pins_are_what_is_installed() -> None:
    """Every runtime and [test] dependency is installed here at exactly its pin (a local label
    such as +cpu aside)."""
    pinned = constraints()
    required = {requirement_name(r) for group in ("", "test") for r in declared()[group]}
    for name in sorted(required):
        version = installed(name)
        assert version is not None, f"{name} is not installed"
        assert version.split("+")[0] == pinned[name], f"{name}: installed {version}, pinned {pinned[name]}"


@pytest.mark.parametrize("extra", OPTIONAL_EXTRAS)
def test_installed_extras_are_at_their_pins(extra: str) -> None:
    pinned = constraints()
    names = [requirement_name(r) for r in declared()[extra]]
    present = {n: installed(n) for n in names}
    if not any(present.values()):
        pytest.skip(f"extra [{extra}] is not installed here ({', '.join(names)})")
    for name, version in present.items():
        assert version is not None, f"[{extra}]: {name} is missing beside the rest of the extra"
        assert version.split("+")[0] == pinned[name], f"{name}: installed {version}, pinned {pinned[name]}"


def test_conda_env_pins_match_the_constraints() -> None:
    env = yaml.safe_load((ROOT / "workflow/envs/nerfpipe.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    in_env = pins(pip_section)
    assert in_env, "the conda environment pins nothing"
    assert len(in_env) == len(pip_section), f"not all pins: {pip_section}"
    pinned = constraints()
    for name, version in in_env.items():
        assert pinned.get(name) == version, f"{name}: env {version} vs constraints.txt {pinned.get(name)}"
    runtime = {requirement_name(r) for r in declared()[""]} - {"snakemake", "snakemake-executor-plugin-slurm"}
    assert runtime <= set(in_env), f"missing from the env: {sorted(runtime - set(in_env))}"


def test_makefile_installs_with_the_constraints_and_their_torch() -> None:
    make = (ROOT / "Makefile").read_text()
    default = re.search(r"^TORCH_SPEC\s*\?=\s*torch==(\S+)", make, re.M).group(1)
    assert default == constraints()["torch"]
    assert re.search(r"^CONSTRAINTS\s*\?=\s*constraints\.txt$", make, re.M)
    installs = [line for line in make.splitlines() if line.startswith("\t") and "pip install" in line
                and "TORCH_SPEC" not in line and "--upgrade pip" not in line]
    # test-oldest installs CONSTRAINTS with the lines of constraints-oldest.txt in place of their pins
    assert installs and all("-c $(CONSTRAINTS)" in line or "-c $(OLDEST_CONSTRAINTS)" in line
                            for line in installs), installs
    assert sum("-c $(CONSTRAINTS)" in line for line in installs) >= 2


def test_not_imported_dependencies_are_the_known_ones() -> None:
    imported = {canonical(DISTRIBUTION_OF.get(m, m)) for m in third_party_imports()}
    runtime = {requirement_name(r) for r in declared()[""]}
    assert runtime - imported == NOT_IMPORTED
