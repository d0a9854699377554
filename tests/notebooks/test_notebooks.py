"""Every notebook under notebooks/ runs twice: under nbval (``--nbval-lax``, stored defaults) and under papermill
with its ``params/<name>/ci.yaml``. Committed notebooks carry no outputs and exactly one ``parameters`` cell, whose
values resolve to the same config as ``ci.yaml`` and which papermill can describe (type and help per parameter)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from dino_lib.config import load_config, read_yaml, to_dict
from dino_lib.notebook import config_class, notebook_config

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NB_IDS = [nb.stem for nb in NOTEBOOKS]


def _cells(nb_path: Path) -> list[dict]:
    return json.loads(nb_path.read_text())["cells"]


def _parameter_cells(nb_path: Path) -> list[dict]:
    return [c for c in _cells(nb_path) if "parameters" in c.get("metadata", {}).get("tags", [])]


def _parameter_defaults(nb_path: Path) -> dict:
    """Literal assignments of the parameters cell, evaluated safely (no code is run)."""
    (cell,) = _parameter_cells(nb_path)
    source = "".join(cell["source"])
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = ast.literal_eval(node.value)
    return values


def _ci_params(nb_path: Path) -> Path:
    return REPO / "params" / nb_path.stem / "ci.yaml"


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_is_stripped(nb_path: Path):
    dirty = [
        i
        for i, c in enumerate(_cells(nb_path))
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{nb_path.name}: cells {dirty} carry outputs or execution counts; strip them before committing"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=NB_IDS)
def test_parameters_cell_matches_ci_yaml(nb_path: Path):
    assert len(_parameter_cells(nb_path)) == 1, f"{nb_path.name}: expected exactly one cell tagged 'parameters'"
    ci = _ci_params(nb_path)
    assert ci.is_file(), f"{nb_path.name}: missing {ci.relative_to(REPO)}"
    (cell,) = _parameter_cells(nb_path)
    source = "".join(cell["source"])
    assert source.lower().startswith("# parameters"), f"{nb_path.name}: the parameters cell starts with '# Parameters'"
    defaults = _parameter_defaults(nb_path)
    assert "output_dir" in defaults, f"{nb_path.name}: every notebook takes an 'output_dir' parameter"
    cls = config_class(nb_path.stem)
    from_cell = to_dict(notebook_config(cls, defaults, history=[source, ""], logging_level=None))
    from_ci = to_dict(load_config(cls, ci))
    diff = {k: (from_cell[k], from_ci[k]) for k in from_cell if from_cell[k] != from_ci[k]}
    assert not diff, f"{nb_path.name}: parameters cell and {ci.relative_to(REPO)} differ (cell, ci.yaml): {diff}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=NB_IDS)
def test_papermill_describes_every_parameter(nb_path: Path):
    """``papermill --help-notebook`` shows a type and a help text for each parameter; none is hidden config-wise."""
    described = papermill.inspect_notebook(str(nb_path))
    assert set(described) == set(_parameter_defaults(nb_path)), f"{nb_path.name}: papermill cannot parse every line"
    vague = [n for n, p in described.items() if p["inferred_type_name"] in ("None", "") or not p["help"]]
    assert not vague, f"{nb_path.name}: parameters without a type annotation or a help comment: {vague}"
    assert "overrides" in described, f"{nb_path.name}: every notebook takes an 'overrides' dict for the other keys"
    old = {"dtype", "amp", "score_dtype"} & set(described)
    assert not old, f"{nb_path.name}: deprecated precision keys in the parameters cell (use precision): {old}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TQDM_DISABLE="1", MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1")
    return env


@pytest.mark.notebook
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_runs_with_papermill_ci_params(nb_path: Path, tmp_path: Path, isolated_home: Path):
    out = tmp_path / f"{nb_path.stem}.executed.ipynb"
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(nb_path),
        str(out),
        "-k",
        "python3",
        "-f",
        str(_ci_params(nb_path)),
        "--cwd",
        str(tmp_path),
        "--no-progress-bar",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, f"papermill failed on {nb_path.name}:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{nb_path.name}: error outputs in the executed notebook: {errors[:1]}"
    injected = [c for c in executed["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    expected = 1 if read_yaml(_ci_params(nb_path)) else 0  # an empty ci.yaml (all defaults) injects nothing
    assert len(injected) == expected, "papermill did not inject the ci.yaml parameters"


@pytest.mark.notebook
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_passes_nbval_lax(nb_path: Path, tmp_path: Path, isolated_home: Path):
    # nbval runs the stored defaults (== ci.yaml); run from a temporary folder so outputs land there.
    local = tmp_path / nb_path.name
    local.write_text(nb_path.read_text())
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-cell-timeout=600",
        "-o",
        "addopts=",
        "--rootdir",
        str(tmp_path),
        str(local),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, f"nbval failed on {nb_path.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.notebook
def test_misspelled_papermill_parameter_stops_the_notebook(tmp_path: Path, isolated_home: Path):
    nb_path = REPO / "notebooks" / "attention_maps.ipynb"
    out = tmp_path / "typo.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(nb_path), str(out), "-k", "python3", "-f", str(_ci_params(nb_path))]
    cmd += ["-p", "treshold", "0.3", "--cwd", str(tmp_path), "--no-progress-bar"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode != 0, "papermill accepted a misspelled parameter"
    assert "did you mean 'threshold'" in proc.stdout + proc.stderr
    assert not (tmp_path / "runs").exists(), "the notebook wrote outputs before rejecting its parameters"
