"""Figure of patch-feature PCA colours (DINOv2's Fig. 1 style): image, first component, colours; arrays in.

The arrays come from :mod:`dino_lib.attention.patch_pca`; maps may be on the patch grid or at picture size (they
are stretched over the picture either way, with no smoothing so patches stay visible).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["patch_pca_figure"]


def patch_pca_figure(
    pictures: Sequence[np.ndarray],
    rgb: Sequence[np.ndarray],
    first: Sequence[np.ndarray] | None = None,
    *,
    names: Sequence[str] | None = None,
    title: str | None = None,
    panel_inches: float = 2.6,
) -> Figure:
    """One row per image: the picture, optionally the first component (viridis), and the PCA colours.

    Args:
        pictures: ``(H, W, 3)`` uint8 images.
        rgb: ``(h, w, 3)`` colours in [0, 1] per image.
        first: ``(h, w)`` first component in [0, 1] per image (the foreground score).
        names: row labels.
        title: figure title.
    """
    if len(pictures) != len(rgb) or (first is not None and len(first) != len(rgb)) or not pictures:
        raise ValueError(
            f"patch_pca_figure needs as many colour maps ({len(rgb)}) and first components as pictures "
            f"({len(pictures)}), and at least one"
        )
    cols = 3 if first is not None else 2
    h, w = pictures[0].shape[:2]
    fig, axes = plt.subplots(
        len(pictures), cols, figsize=(cols * panel_inches, len(pictures) * panel_inches * h / w), squeeze=False
    )
    for row, picture in enumerate(pictures):
        extent = (0, picture.shape[1], picture.shape[0], 0)
        panels = [(picture, "image", {})]
        if first is not None:
            panels.append((first[row], "1st component", {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}))
        panels.append((np.clip(rgb[row], 0.0, 1.0), "PCA components 1-3", {}))
        for col, (array, label, kw) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(array, extent=extent, interpolation="nearest", **kw)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(label, fontsize=9)
        if names is not None:
            axes[row, 0].text(2, 2, names[row], color="white", fontsize=8, va="top", backgroundcolor="black")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
