"""The precision policy: one vocabulary (``auto | fp32 | bf16 | fp16``) and one autocast context for every task.

``auto`` resolves, per device:

* CUDA: bf16 where the GPU supports it (Ampere and later), else fp16 with a gradient scaler, as the reference
  trains with ``use_fp16``;
* CPU: bf16 only where the CPU has native bf16 (see :mod:`dino_lib.runtime.cpu`), else fp32;
* anything else: fp32.

Asking for ``bf16`` on a CPU without native bf16 still runs, with one warning that gives the measured slowdown.
``fp16`` is a CUDA precision: elsewhere it runs in fp32 with a warning. Models run under
:func:`autocast`; losses, the teacher's softmax and the EMA stay fp32 as autocast keeps them.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch

from dino_lib.config import PRECISION_CHOICES, legacy_precision
from dino_lib.runtime.cpu import cpu_has_native_bf16, cpu_info, measure_bf16_slowdown

logger = logging.getLogger(__name__)

__all__ = [
    "PRECISION_CHOICES",
    "PrecisionError",
    "resolve_precision",
    "autocast",
    "autocast_dtype",
    "autocast_disabled",
    "grad_scaler",
    "legacy_precision",
]

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_warned: set[str] = set()


class PrecisionError(ValueError):
    """An unknown precision name."""


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        logger.warning("%s", message)


def _cuda_bf16(device: torch.device) -> bool:
    return bool(torch.cuda.is_bf16_supported()) if device.type == "cuda" else False


def resolve_precision(
    precision: str,
    device: torch.device | str,
    *,
    cpu_bf16: bool | Callable[[], bool] | None = None,
) -> str:
    """The concrete precision (``fp32``, ``bf16`` or ``fp16``) for ``precision`` on ``device``.

    Args:
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: where the model runs.
        cpu_bf16: whether this CPU has native bf16 (a bool, or a probe called when needed); ``None`` reads the CPU
            flags (:func:`dino_lib.runtime.cpu.cpu_has_native_bf16`). Tests inject it.

    Raises:
        PrecisionError: an unknown name.
    """
    if precision not in PRECISION_CHOICES:
        raise PrecisionError(f"precision: expected one of {list(PRECISION_CHOICES)}, found {precision!r}")
    device = torch.device(device)

    def native_cpu_bf16() -> bool:
        if cpu_bf16 is None:
            return cpu_has_native_bf16()
        return bool(cpu_bf16() if callable(cpu_bf16) else cpu_bf16)

    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if _cuda_bf16(device) else "fp16"
        if device.type == "cpu":
            return "bf16" if native_cpu_bf16() else "fp32"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        _warn_once(
            f"fp16-{device.type}",
            f"precision fp16 needs a CUDA device (gradient scaling); running fp32 on {device.type}. "
            "Use precision: auto (bf16 where the CPU supports it) or fp32.",
        )
        return "fp32"
    if precision == "bf16" and device.type == "cpu" and not native_cpu_bf16():
        slowdown = measure_bf16_slowdown()
        _warn_once(
            "bf16-cpu",
            f"precision bf16 on a CPU without native bf16 ({cpu_info().model}; no avx512_bf16/amx_bf16): a bf16 "
            f"matrix product measured {slowdown:.1f}x slower than fp32 here. Use precision: auto (or fp32).",
        )
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (``None`` for fp32)."""
    if precision == "auto":
        raise PrecisionError("autocast_dtype needs a resolved precision; call resolve_precision first")
    if precision not in _DTYPES:
        raise PrecisionError(f"precision: expected one of {list(PRECISION_CHOICES)}, found {precision!r}")
    return _DTYPES[precision]


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for a resolved precision on ``device``'s type; a no-op for fp32."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def autocast_disabled(device_type: str) -> contextlib.AbstractContextManager:
    """A block that runs in full precision even inside :func:`autocast` (e.g. positional interpolation)."""
    return torch.autocast(device_type=device_type, enabled=False)


def grad_scaler(device: torch.device | str, precision: str) -> Any:
    """A gradient scaler for fp16 training on CUDA, else ``None`` (bf16 and fp32 need none)."""
    if precision == "fp16" and torch.device(device).type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
