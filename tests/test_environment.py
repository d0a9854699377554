"""The conda environment file agrees with the package metadata (environment.md §8)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml


def test_environment_yml_pins_python_minor_and_installs_package(repo_root: Path) -> None:
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert env["name"] == "dino-workbench"
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and re.match(r"python\s*[=<>]", d)]
    assert len(pythons) == 1
    pinned = re.fullmatch(r"python\s*=\s*(\d+)\.(\d+)(?:\.\*)?", pythons[0])
    assert pinned, f"environment.yml should pin a Python minor (python=3.X), found {pythons[0]!r}"
    required = re.fullmatch(r">=\s*(\d+)\.(\d+)", project["requires-python"].strip())
    assert required, project["requires-python"]
    assert pinned.groups() == required.groups()
    assert "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip == ["-e .[dev]"]  # everything else comes from pyproject, so the two cannot drift
