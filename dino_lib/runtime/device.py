"""Device resolution: the one place that asks torch whether CUDA exists.

Accepted names are ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` (the process's local rank under
torchrun) and ``cuda:N``. Anything else, or a CUDA name on a machine without CUDA, is a :class:`DeviceError` that
says what was asked for, what this machine has and what to write instead.
"""

from __future__ import annotations

import re

import torch

__all__ = ["DeviceError", "cuda_available", "cuda_device_count", "resolve_device", "DEVICE_CHOICES"]

DEVICE_CHOICES = "auto|cpu|cuda|cuda:N"
_CUDA_N = re.compile(r"^cuda:(\d+)$")


class DeviceError(ValueError):
    """A device name is invalid or names hardware this machine does not have."""


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
        raise DeviceError(f"device: unknown device {device!r}; expected {DEVICE_CHOICES}")
    if not cuda_available():
        raise DeviceError(
            f"device: {device!r} asked for a CUDA GPU, but this machine has none that torch can use "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use device: cpu or device: auto"
        )
    index = int(match.group(1)) if match else local_rank
    count = cuda_device_count()
    if index >= count:
        raise DeviceError(f"device: {device!r} needs GPU index {index}, but this machine has {count} GPU(s)")
    return torch.device("cuda", index)
