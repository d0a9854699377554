"""Process-group setup from the launcher's environment (training.md TRN-03; environment.md §5).

Distribution is decided from ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` as set by ``torchrun`` (or by
:mod:`dino_lib.launch` for Slurm/submitit), never from the GPU count. One process needs no process group: the
helpers below then act as the identity. Back-end: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import sys
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
    "launch_rank",
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


def _device_error(message: str) -> Exception:
    from dino_lib.config import ConfigError

    err = ConfigError(f"device: {message}")
    err.key = "device"
    return err


def resolve_device(device: str | torch.device, local_rank: int | None = None) -> torch.device:
    """The one place a ``device`` setting is checked and resolved: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` is CUDA when a GPU is usable, else the CPU; ``cuda`` and ``auto`` get ``local_rank`` as index when
    given (one GPU per torchrun process). Anything else, ``cuda`` without a usable GPU, or ``cuda:N`` beyond the
    GPU count is a :class:`~dino_lib.config.ConfigError` naming the key and the fix, raised before any work.
    """
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).strip().lower()
    match = re.fullmatch(r"(auto|cpu|cuda)(?::(\d+))?", name)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise _device_error(f"expected auto, cpu, cuda or cuda:N (N = GPU index), found {device!r}")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if kind == "auto":
        if not available:
            return torch.device("cpu")
    elif not available:
        built = torch.version.cuda is not None
        why = "no GPU or driver was found" if built else f"this torch build ({torch.__version__}) has no CUDA support"
        raise _device_error(f"{device!r} requested but CUDA is not usable ({why}); use device: cpu or auto")
    if index is not None:
        count = torch.cuda.device_count()
        if int(index) >= count:
            raise _device_error(f"{device!r} but this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
        return torch.device("cuda", int(index))
    return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")


def launch_rank() -> int:
    """This process's rank as set by the launcher (``RANK``; 0 when not launched by torchrun/Slurm), available
    before the process group exists (e.g. to let only rank 0 lock the output folder)."""
    return int(os.environ.get("RANK", "0"))


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
