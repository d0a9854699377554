"""Ranks and the process group, read from the launcher's environment (torchrun, or Slurm through submitit).

Distribution is decided from ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` as set by ``torchrun`` (or by
:mod:`dino_lib.launch` for Slurm), never from the GPU count, as the reference DINO code does. One process needs no
process group: the helpers below then act as the identity. Back-end: NCCL on CUDA, gloo on the CPU. This module is
the only one that reads those variables.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

__all__ = [
    "DistInfo",
    "env_rank",
    "env_local_rank",
    "env_world_size",
    "env_dist_info",
    "under_launcher",
    "init_distributed",
    "destroy_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "all_reduce_mean",
    "barrier",
    "setup_process",
    "setup_config_process",
    "exit_with_launcher",
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


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise RuntimeError(
            f"environment variable {name}={raw!r} is not an integer; unset it or fix the launcher"
        ) from None


def env_rank() -> int:
    """Global rank from the launcher (0 when not launched by torchrun/Slurm)."""
    return _env_int("RANK", 0)


def env_local_rank() -> int:
    """Rank on this node (selects the GPU)."""
    return _env_int("LOCAL_RANK", 0)


def env_world_size() -> int:
    return _env_int("WORLD_SIZE", 1)


def under_launcher() -> bool:
    """Whether torchrun (or the Slurm launcher) started this process: it sets ``WORLD_SIZE``."""
    return "WORLD_SIZE" in os.environ


def env_dist_info() -> DistInfo:
    """The layout the launcher asked for, before any process group exists."""
    return DistInfo(env_rank(), env_world_size(), env_local_rank())


def init_distributed(device: torch.device | str = "cpu", timeout_s: float = 600.0) -> DistInfo:
    """Initialise the default process group when ``WORLD_SIZE > 1`` (env:// rendezvous) and return the layout.

    Args:
        device: the device this process works on; picks NCCL for CUDA and gloo otherwise.
        timeout_s: collective timeout, so that a dead peer makes the survivors fail instead of hanging forever.
    """
    info = env_dist_info()
    if info.world_size <= 1:
        return DistInfo(0, 1, 0)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={info.world_size} but {var} is not set; launch with torchrun or set it")
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        world_size=info.world_size,
        rank=info.rank,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    logger.info(
        "process group: backend=%s rank=%d/%d local_rank=%d", backend, info.rank, info.world_size, info.local_rank
    )
    return info


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


def setup_process(device: str | torch.device = "auto", timeout_s: float = 600.0) -> tuple[torch.device, DistInfo]:
    """Resolve this process's device (its local GPU under torchrun) and join the process group when launched so.

    Every command-line tool starts with this call, so one process and ``torchrun --nproc_per_node N`` share a path.
    """
    from dino_lib.runtime.device import resolve_device

    resolved = resolve_device(device)
    return resolved, init_distributed(resolved, timeout_s)


def setup_config_process(config: Any, timeout_s: float = 600.0) -> tuple[torch.device, DistInfo]:
    """:func:`setup_process` for a configuration with a ``device`` key, pinned to this process's GPU.

    Under torchrun ``config.device`` becomes ``cuda:<local rank>``, so everything later built from the configuration
    lands on this process's GPU; a CPU device leaves the configuration as it is.
    """
    device, info = setup_process(config.device, timeout_s)
    if device.type == "cuda":
        config.device = str(device)
    return device, info


def exit_with_launcher() -> None:
    """Under torchrun, make this worker die with its launcher (Linux parent-death signal).

    A ``kill -9`` of the ``torchrun`` process gives its workers no chance to be told; without this they keep
    training and writing into the run folder next to a restarted run. Outside torchrun (no ``TORCHELASTIC_RUN_ID``)
    and off Linux this does nothing.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        logger.warning("could not ask to exit with the torchrun launcher (prctl unavailable)")
        return
    if os.getppid() == 1:  # the launcher died before the call: exit now
        os._exit(1)
