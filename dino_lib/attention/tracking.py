"""Attention snapshots during training: a training callback that writes the teacher's attention to TensorBoard.

At the end of an epoch (every ``every`` epochs) :class:`AttentionSnapshot` runs the backbone's last block on one
image and writes the image followed by every head's CLS attention over it, side by side, as one TensorBoard image
(tag ``attention/teacher``). Backbones without attention (CNNs) are skipped. The writer is anything with
``image(tag, picture, step)`` (:class:`dino_lib.train.tracking.TensorBoardWriter`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn

from dino_lib.attention.extract import attention_maps
from dino_lib.attention.preprocess import list_images, preprocess
from dino_lib.attention.render import normalize_maps, overlay
from dino_lib.attention.threshold import to_image_size
from dino_lib.train.callbacks import TrainCallback, TrainState

__all__ = ["AttentionSnapshot", "ImageWriter"]


class ImageWriter(Protocol):
    def image(self, tag: str, picture: np.ndarray, step: int) -> None: ...


class AttentionSnapshot(TrainCallback):
    """Training callback: the last block's CLS attention of every head on one image, as a TensorBoard image.

    Args:
        image: the image shown (a file).
        image_size: its shorter side after resizing (the trainer passes the k-NN crop size).
        every: write at the end of every ``every``-th epoch (``(epoch + 1) % every == 0``).
        tag: the TensorBoard tag.

    Example::

        snapshot = AttentionSnapshot.first_image_of(knn_folder, image_size=cfg.knn_crop, every=cfg.knn_every)
        train(cfg, callbacks=[snapshot])        # as a training callback (TensorBoard on), or directly:
        snapshot.write(epoch, teacher, writer)  # teacher: a backbone or a wrapper with .backbone
    """

    def __init__(self, image: str | Path, image_size: int, *, every: int = 1, tag: str = "attention/teacher") -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, found {every}")
        self.image = Path(image)
        self.image_size = int(image_size)
        self.every = int(every)
        self.tag = tag

    @classmethod
    def first_image_of(cls, folder: str | Path, image_size: int, **kw) -> AttentionSnapshot:
        """A snapshot of the first image (sorted, recursively) under ``folder``."""
        return cls(list_images(folder)[0], image_size, **kw)

    @torch.no_grad()
    def strip(self, backbone: nn.Module) -> np.ndarray | None:
        """The image followed by each head's attention over it (uint8 HWC); ``None`` for backbones without attention.

        Each map is scaled to [0, 1] on its own, as in the paper's figures.
        """
        if not hasattr(backbone, "blocks") or not hasattr(backbone, "patch_size"):
            return None
        device = next(backbone.parameters()).device
        x, picture, geometry = preprocess(self.image, patch_size=int(backbone.patch_size), image_size=self.image_size)
        maps = attention_maps(backbone, x[None].to(device)).maps[0, 0].float().cpu()  # (heads, h, w)
        full = normalize_maps(to_image_size(maps, geometry, mode="bilinear"))  # (heads, H, W) in [0, 1]
        return np.concatenate([picture, *(overlay(picture, m, alpha=0.6) for m in full)], axis=1)

    def on_epoch_end(self, state: TrainState) -> None:
        """Training hook: the teacher's snapshot into the run's TensorBoard writer (nothing without TensorBoard)."""
        self.write(state.epoch, state.teacher, state.tensorboard)

    def write(self, epoch: int, model: nn.Module, writer: ImageWriter | None) -> None:
        """Write the snapshot of ``model`` (a backbone, or a wrapper with ``.backbone``) at step ``epoch``."""
        if writer is None or (epoch + 1) % self.every:
            return
        picture = self.strip(getattr(model, "backbone", model))
        if picture is not None:
            writer.image(self.tag, picture, epoch)
