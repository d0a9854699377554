"""TensorBoard output beside ``log.jsonl``: the same records as scalars, and images handed in by callbacks.

``tensorboard: true`` writes event files to ``RUN_DIR/tb/`` with torch's ``SummaryWriter`` (the optional
``tensorboard`` package); view them with ``tensorboard --logdir RUN_DIR/tb``. Iteration records go to ``train/*``
(loss, lr, wd, momentum, teacher temperature and entropy, centre norm) and ``speed/*`` (images/s, data-wait
fraction) at the global iteration; epoch records to ``epoch/*`` and the k-NN accuracies to ``knn/*`` at the epoch.
Images (e.g. the attention snapshots of :class:`dino_lib.attention.tracking.AttentionSnapshot`) go through
:meth:`TensorBoardWriter.image`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TensorBoardWriter"]

_ITER = {
    "loss": "train/loss",
    "lr": "train/lr",
    "wd": "train/wd",
    "momentum": "train/momentum",
    "teacher_temp": "train/teacher_temp",
    "teacher_entropy": "train/teacher_entropy",
    "center_norm": "train/center_norm",
    "images_per_s": "speed/images_per_s",
    "data_wait_frac": "speed/data_wait_frac",
    "scaler_scale": "train/fp16_scale",
}
_EPOCH = {
    "train_loss": "epoch/loss",
    "train_lr": "epoch/lr",
    "train_wd": "epoch/wd",
    "momentum": "epoch/momentum",
    "teacher_temp": "epoch/teacher_temp",
    "teacher_entropy": "epoch/teacher_entropy",
    "images_per_s": "epoch/images_per_s",
}


class TensorBoardWriter:
    """Mirror trainer records into TensorBoard event files under ``log_dir``.

    Raises:
        ImportError: the ``tensorboard`` package is not installed (the message says how to install it).
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                f"tensorboard: true needs the tensorboard package ({err}); install it with "
                "pip install 'dino-workbench[tensorboard]' (or pip install tensorboard), or set tensorboard: false"
            ) from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def write(self, record: dict[str, Any]) -> None:
        """Write the scalars of one ``log.jsonl`` record (other record types are ignored)."""
        kind = record.get("type")
        if kind == "iter":
            step, names = int(record["it"]), _ITER
        elif kind == "epoch":
            step, names = int(record["epoch"]), _EPOCH
        else:
            return
        for key, value in record.items():
            tag = names.get(key) or (
                f"knn/{key.removeprefix('knn_')}" if kind == "epoch" and key.startswith("knn_") else None
            )
            if tag and isinstance(value, int | float) and np.isfinite(value):
                self.writer.add_scalar(tag, float(value), step)
        if kind == "epoch":
            self.writer.flush()

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """An ``(H, W, 3)`` uint8 image."""
        self.writer.add_image(tag, picture, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
