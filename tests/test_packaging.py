"""The dependency pins live in pyproject.toml; the conda environment of the rules repeats them
(Snakemake needs a file of its own) and must not drift."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(requirements: list[str]) -> dict[str, str]:
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", req.strip())
        if m:
            out[m.group(1).lower()] = m.group(3)
    return out


def test_conda_env_pins_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = pins(project["dependencies"])
    env = yaml.safe_load((ROOT / "workflow/envs/nerfpipe.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    in_env = pins(pip_section)
    assert in_env, "the conda environment pins nothing"
    for name, version in in_env.items():
        if name == "torch":  # bounded in pyproject, chosen by the set-up (TORCH_SPEC)
            continue
        assert declared.get(name) == version, f"{name}: env {version} vs pyproject {declared.get(name)}"
    runtime = {"numpy", "imageio", "pandas", "matplotlib", "tqdm", "jsonschema", "pyyaml", "scipy"}
    assert runtime <= set(in_env)


def test_makefile_default_torch_is_the_env_torch() -> None:
    make = (ROOT / "Makefile").read_text()
    default = re.search(r"^TORCH_SPEC\s*\?=\s*torch==(\S+)", make, re.M).group(1)
    env = (ROOT / "workflow/envs/nerfpipe.yaml").read_text()
    assert f"torch=={default}" in env
