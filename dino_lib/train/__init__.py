"""DINO pretraining: configuration, schedules, optimisers, the training loop and checkpoints (docs/pretraining.md).

Entry points: ``python -m dino_lib.train --config FILE [key=value ...]`` (also under ``torchrun``) and
:func:`train` from Python; :mod:`dino_lib.launch` starts runs from a notebook.
"""

from __future__ import annotations

from typing import Any

from dino_lib.train.config import SlurmConfig, TrainConfig
from dino_lib.train.schedules import cosine_schedule, scaled_lr

__all__ = ["TrainConfig", "SlurmConfig", "cosine_schedule", "scaled_lr", "train", "TrainResult", "NonFiniteLossError"]


def __getattr__(name: str) -> Any:
    # The loop pulls in the data/model stack; import it on first use so `import dino_lib.train` stays light.
    if name in ("train", "TrainResult", "NonFiniteLossError"):
        from dino_lib.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
