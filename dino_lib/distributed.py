"""Process-group setup from the launcher's environment (training.md TRN-03; environment.md §5).

Distribution is decided from ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` as set by ``torchrun`` (or by
:mod:`dino_lib.launch` for Slurm/submitit), never from the GPU count. One process needs no process group: the
helpers below then act as the identity. Back-end: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

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
]


@dataclass(frozen=True)
class DistInfo:
    """Rank layout of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``"cuda"`` gets the local rank."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False; use device: cpu")
        return torch.device("cuda", local_rank)
    return torch.device(device)


def init_distributed(device: torch.device | str = "cpu", timeout_s: float = 600.0) -> DistInfo:
    """Initialise the default process group when ``WORLD_SIZE > 1`` (env:// rendezvous) and return the layout.

    Args:
        device: the device this process trains on; picks NCCL for CUDA and gloo otherwise.
        timeout_s: collective timeout, so that a dead peer makes the survivors fail instead of hanging forever.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistInfo(0, 1, 0)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun or set it")
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        world_size=world,
        rank=rank,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    logger.info("process group: backend=%s rank=%d/%d local_rank=%d", backend, rank, world, local_rank)
    return DistInfo(rank, world, local_rank)


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over processes (a copy; the identity without a process group)."""
    t = t.detach().clone()
    if is_distributed():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()
