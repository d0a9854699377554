"""Callbacks of the training loop: code that watches a run (monitors, snapshots) without the loop importing it.

The loop calls every callback on rank 0 only, while the other ranks wait at a barrier: once before the first
iteration (:meth:`TrainCallback.on_train_start`) and after every epoch, once the checkpoint is written
(:meth:`TrainCallback.on_epoch_end`). The numbers ``on_epoch_end`` returns are added to that epoch's
``log.jsonl`` record (and to TensorBoard), so a monitor's results sit beside the loss they belong to.

Entry points build the callbacks from the configuration (the k-NN monitor:
:func:`dino_lib.launch.default_callbacks`) and pass them to :func:`dino_lib.train.loop.train`::

    from dino_lib.launch import default_callbacks
    train(cfg, callbacks=default_callbacks(cfg))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from dino_lib.train.config import TrainConfig

__all__ = ["TrainState", "TrainCallback"]


@dataclass
class TrainState:
    """What a callback may look at (and log) at one of the loop's call points.

    Attributes:
        config: the run's configuration.
        epoch: at start, the epoch the run starts (or resumes) in; at an epoch end, the epoch just finished
            (0-based; the checkpoint of ``epoch + 1`` is written).
        iteration_in_epoch: at start, the iteration the run resumes at (0 for a run starting an epoch); 0 at
            epoch ends.
        teacher, student: the un-wrapped networks (``MultiCropWrapper``: ``.backbone`` is the ViT or CNN).
        device: this process's device.
        precision: the resolved autocast precision of the run (``fp32``, ``bf16`` or ``fp16``).
        run_dir: the run directory (``output_dir``).
        tensorboard: the run's ``TensorBoardWriter`` (``tensorboard: true``), else None.
        emit: writes one record to ``log.jsonl`` (and TensorBoard, and the progress callback), e.g.
            ``{"type": "event", "event": "...", ...}``.
    """

    config: TrainConfig
    epoch: int
    iteration_in_epoch: int
    teacher: nn.Module
    student: nn.Module
    device: torch.device
    precision: str
    run_dir: Path
    tensorboard: Any | None
    emit: Callable[[dict[str, Any]], None]


class TrainCallback:
    """Base class of training callbacks; override the hooks you need (both do nothing by default).

    Hooks run on rank 0 only, in the order the callbacks were given; the networks are in train mode and must be
    left so (put a backbone in eval mode for a measurement and restore it).
    """

    def on_train_start(self, state: TrainState) -> None:
        """Before the first iteration of this process's run (also when resuming: see ``state.epoch``)."""

    def on_epoch_end(self, state: TrainState) -> dict[str, float] | None:
        """After epoch ``state.epoch`` and its checkpoint; returns numbers to add to the epoch's log record."""
        return None
