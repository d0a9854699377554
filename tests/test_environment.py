"""Packaging: the conda file agrees with pyproject, every dependency is used, test tools stay in the dev extra."""

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


# distribution name -> the module it provides; jupyterlab is started by `make lab`, not imported
_MODULES = {"pillow": "PIL", "scikit-image": "skimage", "scikit-learn": "sklearn", "pyyaml": "yaml"}


def _requirement_names(requirements: list[str]) -> list[str]:
    return [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() for r in requirements]


def test_every_runtime_dependency_is_used_and_test_tools_stay_in_dev(repo_root: Path) -> None:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    runtime = _requirement_names(project["dependencies"])
    dev = _requirement_names(project["optional-dependencies"]["dev"])
    source = "\n".join(p.read_text() for p in (repo_root / "dino_lib").rglob("*.py"))
    unused = []
    for name in runtime:
        if name == "jupyterlab":
            assert "jupyter lab" in (repo_root / "Makefile").read_text()
            continue
        if name == "papermill":  # the notebooks' batch runner: the demo runs on it and the README shows its command
            assert re.search(r"^\s*import papermill\b", (repo_root / "tools" / "demo" / "run.py").read_text(), re.M)
            assert "papermill notebooks/" in (repo_root / "README.md").read_text()
            continue
        module = _MODULES.get(name, name.replace("-", "_"))
        if not re.search(rf"^\s*(import|from) {re.escape(module)}\b", source, re.M):
            unused.append(name)
    assert not unused, f"declared in pyproject but never imported by dino_lib: {unused}"
    assert {"nbval", "pytest", "playwright"} <= set(dev) and not {"nbval", "pytest", "playwright"} & set(runtime)
    assert "nbmake" not in dev + runtime and "imageio" not in runtime


def test_make_lab_serves_on_localhost_with_a_token(repo_root: Path) -> None:
    import subprocess

    out = subprocess.run(
        ["make", "-n", "lab", "STAMP=", "PY=python"], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout
    assert "jupyter lab" in out and "--ServerApp.ip=127.0.0.1" in out and "/lab/tree/notebooks" in out
    assert "token=''" not in out and 'token=""' not in out and "-u TQDM_DISABLE" in out
