"""Continued pretraining: start a new DINO run from released or earlier weights instead of a random initialisation.

Users of DINO and DINOv2 adapt released models to their own domain by continuing self-supervised training on it
(the released DINO training code always starts from random weights). ``init_weights`` names the checkpoint: a
backbone-only file (``dino_deitsmall16_pretrain.pth``, ``teacher_backbone.safetensors``), a full training checkpoint
(``*_full_checkpoint.pth``, ``RUN_DIR/checkpoint.pth``; ``init_checkpoint_key`` picks the teacher or the student) or
any layout :func:`dino_lib.models.load_pretrained` reads. The student backbone is loaded strictly (the positional
table is resampled to the crop grid of this run) and the teacher starts as a copy of the student, as in a fresh run.
With ``init_head`` the projection head and the loss centre come from the same network of the checkpoint too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn

from dino_lib.models.loading import CheckpointError, LoadReport, extract_state_dict, load_pretrained
from dino_lib.utils.io import safe_torch_load

logger = logging.getLogger(__name__)

__all__ = ["init_from_checkpoint"]


def _load_head(head: nn.Module, checkpoint: object, key: str, path: Path) -> None:
    state, _ = extract_state_dict(checkpoint, key, str(path))
    head_state = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
    if not head_state:
        raise CheckpointError(
            f"{path}: init_head is true but the file holds no head ('head.*' keys) under {key!r}; it is a "
            "backbone-only file. Set init_head: false, or give a full training checkpoint"
        )
    try:
        head.load_state_dict(head_state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: its head does not fit this run's head ({err}). Set out_dim, head_hidden_dim, "
            "head_bottleneck_dim, head_nlayers and use_bn_in_head as in the run that saved it, or init_head: false"
        ) from None


def init_from_checkpoint(
    student: nn.Module, path: str | Path, *, checkpoint_key: str = "teacher", init_head: bool = False
) -> tuple[LoadReport, torch.Tensor | None]:
    """Load ``path`` into the student (a :class:`~dino_lib.models.MultiCropWrapper`) before the teacher copies it.

    Returns:
        The backbone's load report and, with ``init_head``, the checkpoint's loss centre ``(1, K)`` when it has one.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the backbone (or, with ``init_head``, the head) does not fit.
    """
    path = Path(path)
    report = load_pretrained(student.backbone, path, checkpoint_key=checkpoint_key, strict=True)
    logger.info("init_weights: %s", report)
    center = None
    if init_head:
        checkpoint = safe_torch_load(path)
        _load_head(student.head, checkpoint, checkpoint_key, path)
        stored = checkpoint.get("dino_loss") if isinstance(checkpoint, dict) else None
        if isinstance(stored, dict) and isinstance(stored.get("center"), torch.Tensor):
            center = stored["center"]
    return report, center
