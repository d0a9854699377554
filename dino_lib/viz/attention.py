"""Figures of attention maps: head grids, thresholded masks with contours, comparisons.

True aspect ratio (``imshow`` with equal aspect, figure size from the image); every function returns a matplotlib
figure. The pixel work (normalisation, colour maps, overlays, mask tints, the reference PNG files) is
:mod:`dino_lib.attention.render`, re-exported here; :func:`write_map_figures` and friends in
:mod:`dino_lib.viz.attention_run` write the figures of a pipeline run.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from dino_lib.attention.render import (
    HEAD_PALETTE,
    Normalization,
    as_numpy,
    colorize,
    head_color,
    mask_overlay,
    normalize_maps,
    overlay,
    save_reference_pngs,
)
from dino_lib.utils.io import png_bytes
from dino_lib.viz.figures import figure_png, finish_figure, save_figure

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
    a = as_numpy(maps)
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
    return finish_figure(fig, title)


def mask_figure(
    picture: np.ndarray,
    masks: torch.Tensor | np.ndarray,
    *,
    threshold: float | None = None,
    alpha: float = 0.5,
    combined: bool = True,
) -> Figure:
    """Per-head thresholded masks ``(heads, H, W)`` with contours, plus all heads on one picture (Figure-3 style)."""
    m = as_numpy(masks) > 0.5
    n = m.shape[0] + (1 if combined else 0)
    cols = min(n, 4)
    fig, axes = _figure_for(picture.shape[:2], -(-n // cols), cols)
    suffix = f" (mass {threshold:g})" if threshold is not None else ""
    for j in range(m.shape[0]):
        color = head_color(j)
        axes.flat[j].imshow(mask_overlay(picture, m[j], color=color, alpha=alpha))
        axes.flat[j].set_title(f"head {j}{suffix}", fontsize=9)
    if combined:
        out = picture
        for j in range(m.shape[0]):
            out = mask_overlay(out, m[j], color=head_color(j), alpha=alpha / 2)
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
    a, b = as_numpy(maps_a), as_numpy(maps_b)
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
