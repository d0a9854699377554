"""Every parameter set of the hierarchical notebooks is a valid config of its command-line twin."""

from __future__ import annotations

from pathlib import Path

import pytest

from dino_lib.config import load_config
from dino_lib.hierarchical.extraction import RegionExtractionConfig
from dino_lib.hierarchical.heatmaps_run import HIPTHeatmapConfig
from dino_lib.hierarchical.region_task import RegionTaskConfig, resolve_region_config
from dino_lib.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
SETS = {"extract_region_features": RegionExtractionConfig, "region_pretrain": TrainConfig,
        "hipt_heatmaps": HIPTHeatmapConfig}  # fmt: skip
FILES = [(name, path) for name in SETS for path in sorted((REPO / "params" / name).glob("*.yaml"))]


@pytest.mark.parametrize("name,path", FILES, ids=[f"{n}/{p.name}" for n, p in FILES])
def test_parameter_set_is_valid(name: str, path: Path) -> None:
    cfg = load_config(SETS[name], path)
    if name == "region_pretrain":
        assert cfg.task == "regions"
        region = cfg.region
        if "g" in region:  # the published recipes fix the grid: check the crops against it
            resolved = resolve_region_config(region, "/nonexistent")
            assert isinstance(resolved, RegionTaskConfig) and resolved.global_crop_size <= resolved.g


def test_published_recipe_values() -> None:
    cfg = load_config(TrainConfig, REPO / "params" / "region_pretrain" / "hipt_vit4k_xs.yaml")
    resolved = resolve_region_config(cfg.region, cfg.data_path)
    assert (resolved.g, resolved.global_crop_size, resolved.local_crop_size, cfg.local_crops_number) == (16, 14, 6, 8)
    assert (cfg.out_dim, cfg.lr, cfg.min_lr, cfg.warmup_epochs, cfg.epochs) == (65536, 5e-4, 1e-6, 10, 125)
    assert (cfg.weight_decay, cfg.weight_decay_end, cfg.momentum_teacher, cfg.clip_grad) == (0.04, 0.4, 0.996, 3.0)
    assert cfg.batch_size_per_gpu * cfg.nproc_per_node == 256 and cfg.norm_last_layer
