"""Tiny training configurations shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dino_lib.config import load_config
from dino_lib.train.config import TrainConfig

TINY: dict[str, Any] = {
    "arch": "vit_tiny",
    "arch_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    "out_dim": 64,
    "head_hidden_dim": 32,
    "head_bottleneck_dim": 16,
    "epochs": 2,
    "warmup_epochs": 1,
    "batch_size_per_gpu": 4,
    "lr": 0.01,
    "global_crops_size": 32,
    "local_crops_size": 16,
    "local_crops_number": 2,
    "precision": "fp32",
    "num_workers": 0,
    "data_path": "sample:images",
    "max_images": 12,
    "log_every": 1,
    "saveckp_freq": 1,
    "device": "cpu",
}


@pytest.fixture()
def tiny_cfg(tmp_path: Path):
    def make(**over: Any) -> TrainConfig:
        data = dict(TINY, output_dir=str(tmp_path / "run"))
        data.update(over)
        return load_config(TrainConfig, None, data)

    return make
