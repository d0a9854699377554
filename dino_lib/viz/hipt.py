"""Figures and a widget for HIPT heat maps and region pretraining curves.

Colouring follows HIPT: a matplotlib colormap (``coolwarm`` default; ``"hipt_jet"`` = jet lightened as
``x / 2 + 0.5``) alpha-blended onto the region image, ``alpha * colour + (1 - alpha) * image`` with alpha 0.5;
with a threshold only scores above it are coloured.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from dino_lib.hierarchical.heatmaps import HIPTHeatmaps, blend_levels
from dino_lib.utils.io import atomic_write_bytes

__all__ = [
    "overlay",
    "plot_hipt_heatmaps",
    "plot_heads",
    "heatmap_widget",
    "plot_region_curves",
    "save_hipt_overlays",
]


def _colours(score: np.ndarray, cmap: str) -> np.ndarray:
    if cmap == "hipt_jet":
        return plt.get_cmap("jet")(score)[..., :3] / 2 + 0.5
    return plt.get_cmap(cmap)(score)[..., :3]


def overlay(
    image: np.ndarray, score: np.ndarray, *, cmap: str = "coolwarm", alpha: float = 0.5, threshold: float | None = None
) -> np.ndarray:
    """Blend a ``(H, W)`` score in [0, 1] onto a ``(H, W, 3)`` uint8 image -> uint8."""
    if score.shape != image.shape[:2]:
        raise ValueError(f"score {score.shape} and image {image.shape[:2]} differ in size")
    base = image.astype(np.float32) / 255.0
    blended = alpha * _colours(np.clip(score, 0, 1), cmap) + (1 - alpha) * base
    if threshold is not None:
        blended = np.where((score > threshold)[..., None], blended, base)
    return (blended * 255).round().astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_hipt_overlays(
    maps: HIPTHeatmaps, output_dir: str | Path, *, cmap: str = "coolwarm", alpha: float = 0.5
) -> list[Path]:
    """Write head 0 of each level blended onto the region image: ``overlay_tile.png``, and with a region level
    ``overlay_region.png`` and ``overlay_blend.png`` (pass-weighted mean of both). Returns the written paths."""
    out = Path(output_dir)
    images = {"overlay_tile.png": maps.tile_maps[0]}
    if maps.region_maps is not None:
        images.update({"overlay_region.png": maps.region_maps[0], "overlay_blend.png": blend_levels(maps, 0, 0)})
    for name, score in images.items():
        atomic_write_bytes(out / name, _png(overlay(maps.image, score, cmap=cmap, alpha=alpha)))
    return [out / name for name in images]


def plot_hipt_heatmaps(
    maps: HIPTHeatmaps,
    *,
    tile_head: int = 0,
    region_head: int = 0,
    alpha: float = 0.5,
    cmap: str = "coolwarm",
    blend: str = "mean",
    threshold: float | None = None,
) -> plt.Figure:
    """Image, tile-level, region-level and blended maps of one head pair."""
    panels = [("region image", maps.image), (f"tile level, head {tile_head}",
              overlay(maps.image, maps.tile_maps[tile_head], cmap=cmap, alpha=alpha, threshold=threshold))]  # fmt: skip
    if maps.region_maps is not None:
        panels.append(
            (
                f"region level, head {region_head}",
                overlay(maps.image, maps.region_maps[region_head], cmap=cmap, alpha=alpha, threshold=threshold),
            )
        )
        score = blend_levels(maps, tile_head, region_head, blend)
        panels.append((f"blend ({blend})", overlay(maps.image, score, cmap=cmap, alpha=alpha, threshold=threshold)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_heads(maps: HIPTHeatmaps, level: str = "tile", *, cmap: str = "coolwarm", alpha: float = 0.5) -> plt.Figure:
    """All heads of one level overlaid on the image."""
    stack = maps.tile_maps if level == "tile" else maps.region_maps
    if stack is None:
        raise ValueError(f"no {level}-level maps (no region ViT)")
    n = stack.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6))
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(overlay(maps.image, stack[i], cmap=cmap, alpha=alpha))
        ax.set_title(f"{level} head {i}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def heatmap_widget(maps: HIPTHeatmaps) -> Any:
    """ipywidgets controls (tile head, region head, alpha, blend, colormap) redrawing :func:`plot_hipt_heatmaps`."""
    import ipywidgets as widgets

    n_tile = maps.tile_maps.shape[0]
    n_region = maps.region_maps.shape[0] if maps.region_maps is not None else 1
    controls = {
        "tile_head": widgets.IntSlider(0, 0, n_tile - 1, description="tile head"),
        "region_head": widgets.IntSlider(0, 0, n_region - 1, description="region head"),
        "alpha": widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="alpha"),
        "blend": widgets.Dropdown(options=["mean", "product"], value="mean", description="blend"),
        "cmap": widgets.Dropdown(options=["coolwarm", "hipt_jet", "viridis", "magma"], description="colormap"),
    }

    def draw(**kwargs: Any) -> None:
        plot_hipt_heatmaps(maps, **kwargs)
        plt.show()

    out = widgets.interactive_output(draw, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())[:3]), widgets.HBox(list(controls.values())[3:]), out])


def plot_region_curves(log_path: str | Path, keys: tuple[str, ...] = ("loss", "lr", "wd")) -> plt.Figure:
    """Curves of a JSON-lines training log; any record key containing one of ``keys`` is plotted per record."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("type", "epoch") == "epoch"]  # per-epoch means, not iterations/events
    if not records:
        raise ValueError(f"{log_path}: empty training log")
    names = [k for k in records[-1] if any(key in k for key in keys) and isinstance(records[-1][k], int | float)]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.4 * max(1, len(names)), 2.8))
    for ax, name in zip(np.atleast_1d(axes), names):
        xs = [r.get("epoch", i) for i, r in enumerate(records) if name in r]
        ax.plot(xs, [r[name] for r in records if name in r], marker="o")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig
