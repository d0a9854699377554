"""Device resolution: the one place that asks torch whether CUDA exists.

Accepted names are ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` (the process's local rank under
torchrun) and ``cuda:N``. Anything else, or a CUDA name on a machine without CUDA, is a :class:`DeviceError` that
says what was asked for, what this machine has and what to write instead.
"""

from __future__ import annotations

import re

import torch

from dino_lib.config import ConfigError

__all__ = ["DeviceError", "cuda_available", "cuda_device_count", "resolve_device", "DEVICE_CHOICES"]

DEVICE_CHOICES = "auto|cpu|cuda|cuda:N"
_CUDA_N = re.compile(r"^cuda:(\d+)$")


class DeviceError(ConfigError):
    """A device name is invalid or names hardware this machine does not have (a config error of key ``device``)."""

    key = "device"


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA device (the only call of ``torch.cuda.is_available`` in the library)."""
    return torch.cuda.is_available()


def cuda_device_count() -> int:
    return torch.cuda.device_count() if cuda_available() else 0


def resolve_device(device: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` for a config's ``device`` value.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (a ``torch.device`` is passed through).
        local_rank: index used for plain ``cuda``; defaults to ``LOCAL_RANK`` of the launcher (0 alone).

    Raises:
        DeviceError: an unknown name, CUDA asked for on a machine without it, or an index past the device count.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if local_rank is None:
        from dino_lib.runtime.ranks import env_local_rank

        local_rank = env_local_rank()
    if name == "auto":
        name = "cuda" if cuda_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA_N.match(name)
    if name != "cuda" and not match:
        raise DeviceError(f"device: expected auto, cpu, cuda or cuda:N (N = GPU index), found {device!r}")
    if not cuda_available():
        built = torch.version.cuda is not None
        why = "no GPU or driver was found" if built else f"this torch build ({torch.__version__}) has no CUDA support"
        raise DeviceError(f"device: {device!r} requested but CUDA is not usable ({why}); use device: cpu or auto")
    index = int(match.group(1)) if match else local_rank
    count = cuda_device_count()
    if index >= count:
        raise DeviceError(f"device: {device!r} but this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)
