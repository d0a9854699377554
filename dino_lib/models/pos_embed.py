"""Positional-embedding interpolation for any input size (the reference DINO rule).

The DINO reference resizes the ``sqrt(N0) x sqrt(N0)`` table with bicubic interpolation given a *scale factor*
``((h + 0.1) / sqrt(N0), (w + 0.1) / sqrt(N0))``. The +0.1 avoids a floor that loses a row (dino issue #8); because
PyTorch maps output to input coordinates with the given scale factor, the sampled values differ from a size-based
resize (up to 0.022 for a 6 x 6 target). Reproducing reference features on non-224 inputs needs this exact form,
so it is the default; the size form (DINOv2 after PR #378) and timm's anti-aliased form are named alternatives.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

PosInterpolation = Literal["dino", "size", "timm"]

__all__ = ["PosInterpolation", "interpolate_pos_embed"]


def interpolate_pos_embed(
    pos_embed: torch.Tensor,
    grid_hw: tuple[int, int],
    *,
    image_hw: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    mode: PosInterpolation = "dino",
) -> torch.Tensor:
    """Resample a ``(1, prefix + N0, D)`` table to a ``(1, prefix + h*w, D)`` table for a ``h x w`` patch grid.

    Args:
        pos_embed: the stored table; its patch part must be a square grid.
        grid_hw: target patch grid (rows = image y, columns = image x).
        image_hw: input size in pixels. The reference keeps the stored table only when the patch count matches
            *and the image is square* (``H == W``); a non-square image whose grid happens to have N0 patches is
            still resampled. Defaults to the grid (square grid = square image).
        num_prefix_tokens: rows before the patch rows (CLS, registers) that are kept as they are.
        mode: ``"dino"`` (reference scale-factor + 0.1 rule), ``"size"`` (size-based bicubic) or ``"timm"``
            (size-based bicubic with anti-aliasing, as timm's ``dynamic_img_size``).

    Returns:
        The resampled table in the dtype of ``pos_embed``.
    """
    h, w = grid_hw
    prefix, patch = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n0 = patch.shape[1]
    side = math.isqrt(n0)
    if side * side != n0:
        raise ValueError(f"positional table has {n0} patch rows, which is not a square grid")
    image_square = (image_hw[0] == image_hw[1]) if image_hw is not None else (h == w)
    if h * w == n0 and image_square:
        return pos_embed
    dim = patch.shape[-1]
    grid = patch.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()  # (1, D, s, s)
    if mode == "dino":
        grid = F.interpolate(
            grid, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic", align_corners=False
        )
    elif mode in ("size", "timm"):
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False, antialias=(mode == "timm"))
    else:
        raise ValueError(f"unknown positional interpolation mode {mode!r}; expected 'dino', 'size' or 'timm'")
    if tuple(grid.shape[-2:]) != (h, w):
        raise RuntimeError(f"interpolated grid {tuple(grid.shape[-2:])} != requested {(h, w)}")
    patch = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim).to(pos_embed.dtype)  # (1, h*w, D), row-major
    return torch.cat([prefix, patch], dim=1)
