"""The runtime: device, precision, ranks and seeds, decided once for every task.

Every subpackage asks this package instead of torch or the environment: :func:`resolve_device` for
``device: auto|cpu|cuda|cuda:N``, :func:`resolve_precision` and :func:`autocast` for
``precision: auto|fp32|bf16|fp16``, the rank helpers for ``RANK``/``WORLD_SIZE``, :func:`seed_everything` for seeds.
See docs/runtime.md for how ``auto`` decides.
"""

from __future__ import annotations

from dino_lib.runtime.cpu import CpuInfo, cpu_has_native_bf16, cpu_info, measure_bf16_slowdown
from dino_lib.runtime.device import (
    DEVICE_CHOICES,
    DeviceError,
    cuda_available,
    cuda_device_count,
    resolve_device,
)
from dino_lib.runtime.precision import (
    PRECISION_CHOICES,
    PrecisionError,
    autocast,
    autocast_disabled,
    autocast_dtype,
    grad_scaler,
    legacy_precision,
    resolve_precision,
)
from dino_lib.runtime.ranks import (
    DistInfo,
    all_reduce_mean,
    barrier,
    destroy_distributed,
    env_dist_info,
    env_local_rank,
    env_rank,
    env_world_size,
    exit_with_launcher,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    setup_process,
    under_launcher,
)
from dino_lib.runtime.seed import seed_everything, seeded

__all__ = [
    "CpuInfo",
    "cpu_info",
    "cpu_has_native_bf16",
    "measure_bf16_slowdown",
    "DEVICE_CHOICES",
    "DeviceError",
    "cuda_available",
    "cuda_device_count",
    "resolve_device",
    "PRECISION_CHOICES",
    "PrecisionError",
    "autocast",
    "autocast_disabled",
    "autocast_dtype",
    "grad_scaler",
    "legacy_precision",
    "resolve_precision",
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "destroy_distributed",
    "env_dist_info",
    "env_local_rank",
    "env_rank",
    "env_world_size",
    "exit_with_launcher",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "setup_process",
    "under_launcher",
    "seed_everything",
    "seeded",
]
