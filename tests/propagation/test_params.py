"""Parameter sets: params/propagate/ mirrors params/propagate_segmentation/, every set is a valid configuration,
and the command-line twin runs the CI set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dino_lib.config import load_config
from dino_lib.propagation import PropagationConfig

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_PARAMS = REPO / "params" / "propagate_segmentation"
ISSUE_PARAMS = REPO / "params" / "propagate"
SETS = ["ci.yaml", "ipace_dino_vits16.yaml", "ipace_mae_vitb16.yaml", "davis2017_dino_vits16.yaml"]


def test_both_parameter_folders_hold_identical_files():
    names = sorted(p.name for p in NOTEBOOK_PARAMS.glob("*.yaml"))
    assert names == sorted(SETS)
    assert sorted(p.name for p in ISSUE_PARAMS.glob("*.yaml")) == names
    for name in names:
        assert (ISSUE_PARAMS / name).read_bytes() == (NOTEBOOK_PARAMS / name).read_bytes(), name


@pytest.mark.parametrize("name", SETS)
def test_parameter_sets_are_valid_configs_with_the_same_keys(name):
    cfg = load_config(PropagationConfig, NOTEBOOK_PARAMS / name)
    ci_keys = set(yaml.safe_load((NOTEBOOK_PARAMS / "ci.yaml").read_text()))
    assert set(yaml.safe_load((NOTEBOOK_PARAMS / name).read_text())) == ci_keys  # all are notebook parameters
    if name.startswith("davis"):
        assert cfg.protocol == "davis_parity" and cfg.resolved_policy == "first"
    if name.startswith("ipace"):
        assert cfg.resolved_policy == "chunks" and cfg.refresh_label_interval == 50


def test_command_line_twin_runs_the_ci_set(tmp_path, capsys, sample_paths):
    from dino_lib.propagation.__main__ import main

    assert main(["--config", str(NOTEBOOK_PARAMS / "ci.yaml"), f"output_dir={tmp_path}", "max_frames=6"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["written"] == 6
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / line["run"] / "manifest.json").is_file()
