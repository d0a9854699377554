"""Attention maps as pixels: normalisation, colour maps, overlays, mask tints, and the reference PNG files.

Pure array functions (``(H, W)`` maps in, ``(H, W, 3)`` uint8 pictures out) shared by the pipeline's data outputs,
the training snapshot and the figures of :mod:`dino_lib.viz.attention`. Fixes two of the reference's rendering
defects: deterministic head colours (a fixed palette instead of an unseeded shuffle) and a choice of normalisation
(per map as the reference, shared across the heads of an image, or a fixed range). The reference file names are
``img.png``, ``attn-head{j}.png`` and ``mask_th{t}_head{j}.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import matplotlib
import numpy as np
import torch
from scipy import ndimage

from dino_lib.utils.io import atomic_write_bytes, png_bytes

__all__ = [
    "Normalization",
    "HEAD_PALETTE",
    "as_numpy",
    "normalize_maps",
    "colorize",
    "overlay",
    "mask_overlay",
    "head_color",
    "save_reference_pngs",
]

Normalization = Literal["per_map", "shared", "fixed"]

# Fixed, distinguishable bright colours (tab10 without grey), cycled for more heads: deterministic, unlike the
# reference's unseeded shuffle.
HEAD_PALETTE: list[tuple[float, float, float]] = [
    c
    for i, c in enumerate(matplotlib.colormaps["tab10"].colors)
    if i != 7  # type: ignore[attr-defined]
]


def as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A float32 numpy copy of a tensor (any device or dtype) or an array."""
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def normalize_maps(
    maps: torch.Tensor | np.ndarray,
    mode: Normalization = "per_map",
    vrange: tuple[float, float] | None = None,
) -> np.ndarray:
    """Scale ``(..., H, W)`` maps to [0, 1]: per map (reference), shared over all given maps, or a fixed range."""
    a = as_numpy(maps)
    if mode == "per_map":
        lo = a.min(axis=(-2, -1), keepdims=True)
        hi = a.max(axis=(-2, -1), keepdims=True)
    elif mode == "shared":
        lo, hi = a.min(), a.max()
    elif mode == "fixed":
        if vrange is None:
            raise ValueError("normalization 'fixed' needs vrange=(vmin, vmax)")
        lo, hi = vrange
    else:
        raise ValueError(f"normalization must be 'per_map', 'shared' or 'fixed', got {mode!r}")
    return np.clip((a - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)


def colorize(map01: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` uint8 through a matplotlib colormap."""
    rgba = matplotlib.colormaps[cmap](map01)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def overlay(picture: np.ndarray, map01: np.ndarray, *, alpha: float = 0.5, cmap: str = "inferno") -> np.ndarray:
    """Blend a colour-mapped ``(H, W)`` map over an ``(H, W, 3)`` uint8 picture; ``alpha`` = map opacity."""
    if picture.shape[:2] != map01.shape:
        raise ValueError(f"picture {picture.shape[:2]} and map {map01.shape} differ in size; up-sample the map first")
    colored = colorize(map01, cmap).astype(np.float32)
    return (picture.astype(np.float32) * (1 - alpha) + colored * alpha).round().astype(np.uint8)


def mask_overlay(
    picture: np.ndarray,
    mask: np.ndarray | torch.Tensor,
    *,
    color: Sequence[float] = HEAD_PALETTE[0],
    alpha: float = 0.5,
    contour: bool = True,
) -> np.ndarray:
    """Tint the masked pixels with ``color`` at ``alpha`` (the reference blend) and draw the mask's outline."""
    m = as_numpy(mask) > 0.5
    out = picture.astype(np.float32).copy()
    rgb = np.asarray(color[:3], dtype=np.float32) * 255
    out[m] = out[m] * (1 - alpha) + rgb * alpha
    if contour:
        edge = m & ~ndimage.binary_erosion(m, border_value=0)
        out[edge] = rgb
    return out.round().astype(np.uint8)


def head_color(head: int) -> tuple[float, float, float]:
    """The palette colour of a head index (cycled)."""
    return HEAD_PALETTE[head % len(HEAD_PALETTE)]


def save_reference_pngs(
    output_dir: str | Path,
    picture: np.ndarray,
    maps: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray | None = None,
    *,
    threshold: float | None = None,
    cmap: str = "viridis",
) -> list[Path]:
    """The reference script's files: ``img.png``, ``attn-head{j}.png`` (per-map min-max, viridis) and, with masks,
    ``mask_th{t}_head{j}.png`` (deterministic colours, true aspect ratio). Returns the written paths."""
    out = Path(output_dir)
    written = [atomic_write_bytes(out / "img.png", png_bytes(picture))]
    scaled = normalize_maps(maps, "per_map")
    for j in range(scaled.shape[0]):
        written.append(atomic_write_bytes(out / f"attn-head{j}.png", png_bytes(colorize(scaled[j], cmap))))
    if masks is not None:
        m = as_numpy(masks)
        for j in range(m.shape[0]):
            img = mask_overlay(picture, m[j], color=head_color(j))
            written.append(atomic_write_bytes(out / f"mask_th{threshold}_head{j}.png", png_bytes(img)))
    return written
