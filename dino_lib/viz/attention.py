"""Figures and images of attention maps: head grids, overlays, thresholded masks with contours, comparisons.

Fixes the reference's rendering defects: deterministic colours (a fixed palette instead of
an unseeded shuffle), true aspect ratio (``imshow`` with equal aspect, figure size from the image), a choice of
normalisation (per map as the reference, shared across the heads of an image, or a fixed range), and every
function returns an array or a matplotlib figure; files are optional and written atomically with the reference
names (``img.png``, ``attn-head{j}.png``, ``mask_th{t}_head{j}.png``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import ndimage

from dino_lib.utils.io import atomic_write_bytes

__all__ = [
    "Normalization",
    "HEAD_PALETTE",
    "normalize_maps",
    "colorize",
    "overlay",
    "mask_overlay",
    "head_grid_figure",
    "mask_figure",
    "compare_figure",
    "figure_png",
    "save_figure",
    "png_bytes",
    "save_reference_pngs",
]

Normalization = Literal["per_map", "shared", "fixed"]

# Fixed, distinguishable bright colours (tab10 without grey), cycled for more heads: deterministic, unlike the
# reference's unseeded shuffle.
HEAD_PALETTE: list[tuple[float, float, float]] = [
    c
    for i, c in enumerate(plt.get_cmap("tab10").colors)
    if i != 7  # type: ignore[attr-defined]
]


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def normalize_maps(
    maps: torch.Tensor | np.ndarray,
    mode: Normalization = "per_map",
    vrange: tuple[float, float] | None = None,
) -> np.ndarray:
    """Scale ``(..., H, W)`` maps to [0, 1]: per map (reference), shared over all given maps, or a fixed range."""
    a = _np(maps)
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
    rgba = plt.get_cmap(cmap)(map01)
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
    m = _np(mask) > 0.5
    out = picture.astype(np.float32).copy()
    rgb = np.asarray(color[:3], dtype=np.float32) * 255
    out[m] = out[m] * (1 - alpha) + rgb * alpha
    if contour:
        edge = m & ~ndimage.binary_erosion(m, border_value=0)
        out[edge] = rgb
    return out.round().astype(np.uint8)


def _figure_for(hw: tuple[int, int], rows: int, cols: int, panel_inches: float = 2.6) -> tuple[Figure, np.ndarray]:
    h, w = hw
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * panel_inches, rows * panel_inches * h / w + 0.3 * rows), squeeze=False
    )
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def head_grid_figure(
    picture: np.ndarray,
    maps: torch.Tensor | np.ndarray,
    *,
    normalization: Normalization = "per_map",
    vrange: tuple[float, float] | None = None,
    cmap: str = "viridis",
    alpha: float | None = None,
    show_mean: bool = True,
    cols: int | None = None,
    title: str | None = None,
) -> Figure:
    """The picture, every head's map (``(heads, H, W)`` at picture size) and their mean, in one grid.

    ``alpha`` set: maps are drawn as overlays on the picture; ``None``: maps alone (the reference's look).
    """
    a = _np(maps)
    panels = [a[j] for j in range(a.shape[0])] + ([a.mean(axis=0)] if show_mean else [])
    names = [f"head {j}" for j in range(a.shape[0])] + (["mean"] if show_mean else [])
    scaled = normalize_maps(np.stack(panels), normalization, vrange)
    n = len(panels) + 1
    cols = cols or min(n, 4)
    rows = -(-n // cols)
    fig, axes = _figure_for(picture.shape[:2], rows, cols)
    axes.flat[0].imshow(picture)
    axes.flat[0].set_title("image", fontsize=9)
    for ax, m, name in zip(axes.flat[1:], scaled, names):
        ax.imshow(overlay(picture, m, alpha=alpha, cmap=cmap) if alpha is not None else colorize(m, cmap))
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def mask_figure(
    picture: np.ndarray,
    masks: torch.Tensor | np.ndarray,
    *,
    threshold: float | None = None,
    alpha: float = 0.5,
    combined: bool = True,
) -> Figure:
    """Per-head thresholded masks ``(heads, H, W)`` with contours, plus all heads on one picture (Figure-3 style)."""
    m = _np(masks) > 0.5
    n = m.shape[0] + (1 if combined else 0)
    cols = min(n, 4)
    fig, axes = _figure_for(picture.shape[:2], -(-n // cols), cols)
    suffix = f" (mass {threshold:g})" if threshold is not None else ""
    for j in range(m.shape[0]):
        color = HEAD_PALETTE[j % len(HEAD_PALETTE)]
        axes.flat[j].imshow(mask_overlay(picture, m[j], color=color, alpha=alpha))
        axes.flat[j].set_title(f"head {j}{suffix}", fontsize=9)
    if combined:
        out = picture
        for j in range(m.shape[0]):
            out = mask_overlay(out, m[j], color=HEAD_PALETTE[j % len(HEAD_PALETTE)], alpha=alpha / 2)
        axes.flat[m.shape[0]].imshow(out)
        axes.flat[m.shape[0]].set_title("all heads", fontsize=9)
    fig.tight_layout()
    return fig


def compare_figure(
    picture: np.ndarray,
    maps_a: torch.Tensor | np.ndarray,
    maps_b: torch.Tensor | np.ndarray,
    *,
    labels: tuple[str, str] = ("teacher", "student"),
    normalization: Normalization = "shared",
    cmap: str = "viridis",
) -> Figure:
    """Two rows of per-head maps (``(heads, H, W)`` each), e.g. two checkpoints or teacher vs student.

    With ``normalization="shared"`` both rows use one colour scale, so they are directly comparable.
    """
    a, b = _np(maps_a), _np(maps_b)
    if a.shape != b.shape:
        raise ValueError(f"maps to compare differ in shape: {a.shape} vs {b.shape}")
    both = normalize_maps(np.stack([a, b]), normalization) if normalization != "per_map" else None
    fig, axes = _figure_for(picture.shape[:2], 2, a.shape[0] + 1)
    for row, (name, maps) in enumerate(zip(labels, (a, b))):
        axes[row, 0].imshow(picture)
        axes[row, 0].set_title(name, fontsize=9)
        scaled = both[row] if both is not None else normalize_maps(maps, "per_map")
        for j in range(a.shape[0]):
            axes[row, j + 1].imshow(colorize(scaled[j], cmap))
            axes[row, j + 1].set_title(f"head {j}", fontsize=9)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (no timestamp metadata, so identical figures give identical bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure as PNG atomically."""
    return atomic_write_bytes(path, figure_png(fig, dpi))


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 array or an ``(H, W)`` [0, 1] map."""
    from PIL import Image

    buf = io.BytesIO()
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(array).save(buf, format="png")
    return buf.getvalue()


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
        m = _np(masks)
        for j in range(m.shape[0]):
            img = mask_overlay(picture, m[j], color=HEAD_PALETTE[j % len(HEAD_PALETTE)])
            written.append(atomic_write_bytes(out / f"mask_th{threshold}_head{j}.png", png_bytes(img)))
    return written
