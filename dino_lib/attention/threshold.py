"""Attention-mass thresholding and up-sampling of maps to the image.

Reference semantics of ``--threshold f`` (DINO ``visualize_attention.py``): per head, keep the smallest set of most
attended patches whose mass is at least ``f`` of that head's total patch mass; the patch whose inclusion crosses
the threshold is kept. Ties are broken deterministically: a stable ascending sort puts equal values in index order,
so among equal patches the one with the **larger** flat index is kept first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dino_lib.attention.preprocess import Geometry

__all__ = ["mass_threshold", "top_fraction_mask", "absolute_mask", "upsample", "to_image_size", "kept_mass"]


def _flatten(maps: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    if maps.ndim < 2:
        raise ValueError(f"maps must have at least 2 dims (..., h, w), got shape {tuple(maps.shape)}")
    return maps.reshape(*maps.shape[:-2], -1), tuple(maps.shape)


def mass_threshold(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean masks keeping ``fraction`` of each map's attention mass (the reference algorithm).

    Args:
        maps: ``(..., h, w)`` non-negative attention (each map thresholded on its own).
        fraction: in [0, 1]; 0.6 in the paper.

    Returns:
        ``(..., h, w)`` bool.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"threshold fraction must be within [0, 1], got {fraction}")
    flat, shape = _flatten(maps.float())
    values, order = torch.sort(flat, dim=-1, stable=True)  # ascending; (..., N)
    values = values / values.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
    cumulative = values.cumsum(dim=-1)
    keep_sorted = cumulative > (1.0 - fraction)
    mask = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)  # un-sort
    return mask.reshape(shape)


def kept_mass(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Fraction of each map's mass inside its mask, ``(...)``."""
    flat, _ = _flatten(maps.float())
    m, _ = _flatten(masks)
    return (flat * m).sum(-1) / flat.sum(-1)


def top_fraction_mask(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep the ``ceil(fraction · N)`` most attended patches of each map (alternative to mass thresholding)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    flat, shape = _flatten(maps.float())
    n = flat.shape[-1]
    k = int(torch.ceil(torch.tensor(fraction * n)).item())
    order = torch.sort(flat, dim=-1, descending=True, stable=True).indices[..., :k]
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, order, True)
    return mask.reshape(shape)


def absolute_mask(maps: torch.Tensor, value: float) -> torch.Tensor:
    """Patches whose attention exceeds ``value``."""
    return maps > value


def upsample(maps: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Nearest up-sampling ×p of ``(..., h, w)`` maps (the reference's ``interpolate(scale_factor=p)``)."""
    return maps.repeat_interleave(patch_size, dim=-2).repeat_interleave(patch_size, dim=-1)


def to_image_size(maps: torch.Tensor, geometry: Geometry, *, mode: str = "nearest") -> torch.Tensor:
    """Up-sample ``(..., h, w)`` grid maps to the picture of ``geometry`` (padding cut off).

    ``mode="nearest"`` is the reference (×p blocks); ``"bilinear"`` gives smooth overlays.
    """
    hi, wi = geometry.input_hw
    dh, dw = geometry.display_hw
    dh, dw = min(dh, hi), min(dw, wi)
    if mode == "nearest" or maps.dtype == torch.bool:
        full = upsample(maps, geometry.patch_size)
    else:
        lead = maps.shape[:-2]
        flat = maps.float().reshape(-1, 1, *maps.shape[-2:])
        full = F.interpolate(flat, size=(hi, wi), mode=mode, align_corners=False).reshape(*lead, hi, wi)
    return full[..., :dh, :dw]
