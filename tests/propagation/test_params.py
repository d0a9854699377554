"""Parameter sets of params/propagate_segmentation/ are valid configurations, and the command-line twin runs the
CI set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dino_lib.config import load_config
from dino_lib.propagation import PropagationConfig

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_PARAMS = REPO / "params" / "propagate_segmentation"
SETS = ["ci.yaml", "ipace_dino_vits16.yaml", "ipace_mae_vitb16.yaml", "davis2017_dino_vits16.yaml"]


def test_parameter_folder_holds_the_documented_sets():
    assert sorted(p.name for p in NOTEBOOK_PARAMS.glob("*.yaml")) == sorted(SETS)


@pytest.mark.parametrize("name", SETS)
def test_parameter_sets_are_valid_configs(name):
    cfg = load_config(PropagationConfig, NOTEBOOK_PARAMS / name)
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
