"""Frozen backbones for evaluation: build by name, load local weights, freeze (evaluation.md §1, EVL-07, EVL-10).

``pretrained_weights`` is a local file (backbone-only export, full DINO checkpoint with ``teacher``/``student``,
MAE or timm weights, training.md §15). Nothing is downloaded: a missing file is an error. ``None`` keeps random
weights and logs a visible warning (useful for smoke tests only). ``arch="auto"`` reads the ViT size, patch size
and depth from the checkpoint's tensor shapes, so an evaluation can follow whatever a pretraining run produced.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import torch.nn as nn

from dino_lib.models import LoadReport, build_backbone, load_pretrained
from dino_lib.models.loading import extract_state_dict
from dino_lib.utils.io import safe_torch_load

logger = logging.getLogger(__name__)

__all__ = ["infer_vit_spec", "build_eval_backbone"]

_WIDTH_TO_ARCH = {192: "vit_tiny", 384: "vit_small", 768: "vit_base"}


def infer_vit_spec(path: str | Path, checkpoint_key: str = "teacher") -> dict[str, int | str]:
    """``{"arch", "patch_size", "depth"}`` of the ViT whose weights are in ``path`` (from tensor shapes)."""
    state, _ = extract_state_dict(safe_torch_load(path), checkpoint_key, str(path))
    proj = state.get("patch_embed.proj.weight")
    if proj is None:
        raise ValueError(f"{path}: no 'patch_embed.proj.weight'; arch='auto' only works for ViT checkpoints")
    width, patch = int(proj.shape[0]), int(proj.shape[-1])
    if width not in _WIDTH_TO_ARCH:
        raise ValueError(f"{path}: embedding width {width} is not one of {sorted(_WIDTH_TO_ARCH)}; set arch explicitly")
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    return {"arch": _WIDTH_TO_ARCH[width], "patch_size": patch, "depth": depth}


def build_eval_backbone(
    arch: str,
    *,
    patch_size: int | None = 16,
    depth: int | None = None,
    pretrained_weights: str | Path | None = None,
    checkpoint_key: str = "teacher",
) -> tuple[nn.Module, LoadReport | None]:
    """Build ``arch``, load ``pretrained_weights`` (strictly, heads ignored), freeze it and set eval mode.

    Raises:
        FileNotFoundError: ``pretrained_weights`` names a file that does not exist (never downloaded).
        ValueError: ``arch="auto"`` without weights.
    """
    if pretrained_weights is not None and not Path(pretrained_weights).is_file():
        raise FileNotFoundError(
            f"pretrained_weights: {pretrained_weights} not found; give a local checkpoint (nothing is downloaded) "
            "or null for random weights"
        )
    kwargs = {}
    if arch == "auto":
        if pretrained_weights is None:
            raise ValueError("arch='auto' reads the architecture from pretrained_weights; give a checkpoint or an arch")
        spec = infer_vit_spec(pretrained_weights, checkpoint_key)
        arch, patch_size, depth = str(spec["arch"]), int(spec["patch_size"]), int(spec["depth"])
        logger.info("arch auto -> %s, patch %d, depth %d", arch, patch_size, depth)
    if depth is not None:
        kwargs["depth"] = depth
    is_vit = arch.startswith("vit_")
    model = build_backbone(arch, patch_size=patch_size if is_vit else None, **kwargs)
    report = None
    if pretrained_weights is None:
        warnings.warn(f"no pretrained_weights given: evaluating a RANDOMLY INITIALISED {arch}", stacklevel=2)
    else:
        report = load_pretrained(model, pretrained_weights, checkpoint_key=checkpoint_key, strict=is_vit)
        logger.info("%s", report)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return model, report
