"""``python -m dino_lib.attention`` with ``task: hipt`` is the command-line twin of the hipt_heatmaps notebook."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dino_lib.attention.__main__ import main

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
