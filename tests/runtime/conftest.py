"""Fixtures for the runtime tests: tiny training configs and a tiny labelled photo folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dino_lib.config import load_config
from dino_lib.train.config import TrainConfig

TINY_TRAIN: dict[str, Any] = {
    "arch": "vit_tiny",
    "arch_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2},
    "out_dim": 64,
    "head_hidden_dim": 32,
    "head_bottleneck_dim": 16,
    "epochs": 1,
    "warmup_epochs": 0,
    "batch_size_per_gpu": 2,
    "global_crops_size": 32,
    "local_crops_size": 16,
    "local_crops_number": 1,
    "num_workers": 0,
    "data_path": "sample:images",
    "max_images": 4,
    "device": "cpu",
}


@pytest.fixture()
def tiny_train_cfg(tmp_path: Path):
    def make(**over: Any) -> TrainConfig:
        return load_config(TrainConfig, None, {**TINY_TRAIN, "output_dir": str(tmp_path / "run"), **over})

    return make
