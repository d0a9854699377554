"""setup_config_process: the process start-up shared by the evaluation and feature-extraction commands."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dino_lib.runtime.ranks import setup_config_process


@dataclass
class _Cfg:
    device: str = "cpu"


def test_cpu_config_is_left_as_it_is(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    cfg = _Cfg("cpu")
    device, info = setup_config_process(cfg)
    assert device == torch.device("cpu") and cfg.device == "cpu"
    assert info.world_size == 1 and not info.distributed
