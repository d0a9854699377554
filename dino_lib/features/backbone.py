"""Frozen backbones for evaluation: build by name, load local weights, freeze.

``pretrained_weights`` is a local file (backbone-only export, full DINO checkpoint with ``teacher``/``student``,
MAE or timm weights). Nothing is downloaded: a missing file is an error. ``None`` keeps random weights and logs a
visible warning (useful for smoke tests only). ``arch="auto"`` reads the ViT size, patch size and depth from the
checkpoint's tensor shapes, so an evaluation can follow whatever a pretraining run produced. Building and loading
go through :func:`dino_lib.models.build_and_load`, as for every other task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from dino_lib.models import BackboneSpec, LoadReport, build_and_load, infer_vit_spec

__all__ = ["infer_vit_spec", "build_eval_backbone", "eval_backbone_from_config"]


def build_eval_backbone(
    arch: str,
    *,
    patch_size: int | None = 16,
    depth: int | None = None,
    pretrained_weights: str | Path | None = None,
    checkpoint_key: str = "teacher",
) -> tuple[nn.Module, LoadReport | None]:
    """Build ``arch``, load ``pretrained_weights`` (strictly for ViTs, heads ignored), freeze it, eval mode.

    Raises:
        FileNotFoundError: ``pretrained_weights`` names a file that does not exist (never downloaded).
        ValueError: ``arch="auto"`` without weights.
    """
    spec = BackboneSpec(
        arch,
        patch_size=patch_size,
        weights=pretrained_weights,
        checkpoint_key=checkpoint_key,
        kwargs={"depth": depth} if depth is not None else {},
    )
    is_vit = arch == "auto" or arch.startswith("vit_")
    return build_and_load(spec, strict=is_vit, freeze=True)


def eval_backbone_from_config(cfg: Any) -> tuple[nn.Module, LoadReport | None]:
    """:func:`build_eval_backbone` from a configuration's ``arch``, ``patch_size``, ``depth``,
    ``pretrained_weights`` and ``checkpoint_key`` (the keys evaluation and feature extraction share)."""
    return build_eval_backbone(
        cfg.arch,
        patch_size=cfg.patch_size,
        depth=cfg.depth,
        pretrained_weights=cfg.pretrained_weights,
        checkpoint_key=cfg.checkpoint_key,
    )
