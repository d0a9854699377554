"""The command lines of the hierarchical steps: ``python -m dino_lib.attention`` with ``task: hipt`` (twin of the
hipt_heatmaps notebook) and ``python -m dino_lib.hierarchical``, which routes on the task of the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dino_lib.attention.__main__ import main
from dino_lib.config import ConfigError
from dino_lib.hierarchical.__main__ import main as hierarchical_main
from dino_lib.hierarchical.extraction import ExtractionResult

REPO = Path(__file__).resolve().parents[2]


def test_hipt_task_writes_heatmaps(tmp_path: Path):
    out = tmp_path / "hipt"
    summary = main(["--config", str(REPO / "params/hipt_heatmaps/ci.yaml"), f"output_dir={out}"])
    assert summary["task"] == "hipt"
    maps = np.load(out / "heatmaps.npz")
    assert maps["tile_maps"].ndim == 3 and maps["region_maps"].ndim == 3
    assert list(maps["tile_maps"].shape) == summary["tile_maps"]
    assert all((out / name).is_file() for name in ("overlay_tile.png", "overlay_region.png", "overlay_blend.png"))
    assert (out / "config.yaml").is_file()


def test_hierarchical_command_routes_on_the_task(tmp_path: Path):
    out = tmp_path / "regions"
    argv = ["--config", str(REPO / "params/extract_region_features/ci.yaml"), f"output_dir={out}", "stacked=false"]
    result = hierarchical_main(argv)
    assert isinstance(result, ExtractionResult) and result.written == 2 and (out / "manifest.csv").is_file()
    with pytest.raises(ConfigError, match="expected 'regions' .* or 'hipt'"):
        hierarchical_main(["task=images"])
