"""Process-group helpers, kept importable under their old name; they live in :mod:`dino_lib.runtime`."""

from __future__ import annotations

from dino_lib.runtime import (
    DistInfo,
    all_reduce_mean,
    barrier,
    destroy_distributed,
    exit_with_launcher,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    resolve_device,
)
from dino_lib.runtime import env_rank as launch_rank

__all__ = [
    "DistInfo",
    "init_distributed",
    "destroy_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "all_reduce_mean",
    "barrier",
    "resolve_device",
    "launch_rank",
    "exit_with_launcher",
]
