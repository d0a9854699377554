"""A stage-1 run records its input normalisation; extraction finds it and refuses a contradicting preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dino_lib.config import ConfigError, from_dict, save_run_config
from dino_lib.data.normalization import NORMALIZATIONS
from dino_lib.hierarchical.encoder import recorded_normalization, resolve_normalization
from dino_lib.train.config import TrainConfig


@pytest.mark.parametrize("preset", ["imagenet", "hipt"])
def test_run_config_records_normalization(tmp_path: Path, preset: str):
    cfg = from_dict(TrainConfig, {"normalization": preset, "output_dir": str(tmp_path)})
    save_run_config(cfg, tmp_path)
    weights = tmp_path / "teacher_backbone.pth"
    torch.save({}, weights)
    assert recorded_normalization(weights) == NORMALIZATIONS[preset]
    other = "hipt" if preset == "imagenet" else "imagenet"
    with pytest.raises(ValueError, match="differs from the one stage 1 was trained with"):
        resolve_normalization(other, recorded_normalization(weights), str(weights))


def test_unknown_normalization_is_rejected():
    with pytest.raises(ConfigError, match="normalization"):
        from_dict(TrainConfig, {"normalization": "cifar"})


def test_image_task_normalises_with_the_configured_preset(sample_paths):
    from dino_lib.train.tasks import build_image_task

    cfg = from_dict(
        TrainConfig,
        {"normalization": "hipt", "arch": "vit_tiny", "global_crops_size": 32, "local_crops_size": 16,
         "local_crops_number": 1, "data_path": "sample:images", "max_images": 2},
    )  # fmt: skip
    task = build_image_task(cfg)
    normalize = [
        t for t in task.dataset.dataset.transform.global_transfo1.transforms if type(t).__name__ == "Normalize"
    ]
    assert normalize and list(normalize[-1].mean) == [0.5, 0.5, 0.5]
