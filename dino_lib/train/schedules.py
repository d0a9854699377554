"""Per-iteration schedules as NumPy arrays, element for element as the reference DINO trainer.

The cosine schedule keeps the reference's quirks on purpose (faithful mode): iteration 0 of a warm-up has the
start value (LR exactly 0), the warm-up ``linspace`` includes its end point and the cosine starts at the same
peak, so the peak value appears on two consecutive iterations, and the cosine never quite reaches ``final_value``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cosine_schedule", "scaled_lr"]


def cosine_schedule(
    base_value: float,
    final_value: float,
    epochs: int,
    niter_per_ep: int,
    warmup_epochs: int = 0,
    start_warmup_value: float = 0,
) -> np.ndarray:
    """One value per iteration for ``epochs * niter_per_ep`` iterations: linear warm-up, then half a cosine.

    Args:
        base_value: value at the end of the warm-up (and start of the cosine).
        final_value: the value the cosine approaches (not reached).
        epochs: number of epochs.
        niter_per_ep: iterations per epoch.
        warmup_epochs: epochs of linear warm-up from ``start_warmup_value``.
        start_warmup_value: first warm-up value.

    Returns:
        float64 array of length ``epochs * niter_per_ep``.
    """
    total = epochs * niter_per_ep
    warmup_iters = warmup_epochs * niter_per_ep
    warmup = np.linspace(start_warmup_value, base_value, warmup_iters) if warmup_epochs > 0 else np.array([])
    j = np.arange(total - warmup_iters)
    cosine = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * j / max(len(j), 1)))
    schedule = np.concatenate((warmup, cosine)).astype(np.float64)
    if len(schedule) != total:
        raise ValueError(f"warmup_epochs ({warmup_epochs}) must not exceed epochs ({epochs})")
    return schedule


def scaled_lr(lr: float, batch_size_per_gpu: int, world_size: int) -> float:
    """Peak LR of the schedule: ``lr`` is given for a total batch of 256 and scaled linearly."""
    return lr * batch_size_per_gpu * world_size / 256.0
