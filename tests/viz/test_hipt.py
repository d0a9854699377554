"""Heat-map rendering and curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from dino_lib.hierarchical.heatmaps import HIPTHeatmaps
from dino_lib.viz.hipt import heatmap_widget, overlay, plot_heads, plot_hipt_heatmaps, plot_region_curves

matplotlib.use("Agg")


def _maps() -> HIPTHeatmaps:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    return HIPTHeatmaps(image, rng.random((3, 16, 16)), rng.random((2, 16, 16)), np.full((16, 16), 2.0),
                        np.full((16, 16), 4.0), (2, 2))  # fmt: skip


def test_overlay_alpha_and_threshold() -> None:
    maps = _maps()
    score = maps.tile_maps[0]
    assert np.array_equal(overlay(maps.image, score, alpha=0.0), maps.image)
    full = overlay(maps.image, score, alpha=1.0, cmap="gray")
    np.testing.assert_allclose(full[..., 0] / 255.0, score, atol=0.01)  # gray colormap: colour = score
    masked = overlay(maps.image, score, alpha=1.0, threshold=0.5)
    assert np.array_equal(masked[score <= 0.5], maps.image[score <= 0.5])
    jet = overlay(maps.image, score, alpha=1.0, cmap="hipt_jet")
    assert jet.min() >= 127  # lightened jet: x / 2 + 0.5
    with pytest.raises(ValueError, match="differ in size"):
        overlay(maps.image, score[:8])


def test_figures_and_widget(tmp_path: Path) -> None:
    maps = _maps()
    assert len(plot_hipt_heatmaps(maps, tile_head=2, region_head=1).axes) == 4
    assert len(plot_heads(maps, "region").axes) == 2
    box = heatmap_widget(maps)
    assert box.children[0].children[0].max == 2
    log = tmp_path / "log.jsonl"
    records = [{"type": "iter", "loss": 9.0}] + [
        {"type": "epoch", "epoch": e, "train_loss": 5.0 - e, "train_lr": 1e-4, "train_wd": 0.04} for e in range(3)
    ]
    log.write_text("\n".join(json.dumps(r) for r in records))
    fig = plot_region_curves(log, keys=("train_loss", "train_lr", "train_wd"))
    assert len(fig.axes) == 3 and list(fig.axes[0].lines[0].get_ydata()) == [5.0, 4.0, 3.0]
