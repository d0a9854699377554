"""Browsing propagation outputs: a ground truth | prediction panel read from files and a frame-slider widget.

The drawing itself (palette colouring, overlays, error maps, legends) is :mod:`dino_lib.viz.segmentation`; this
module only loads a run's files and wires them to an ipywidgets slider.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dino_lib.viz.segmentation import blend, colourise, side_by_side

__all__ = ["load_panel", "frame_slider"]


def load_panel(
    frame: Path, pred: Path, gt: Path | None, palette: np.ndarray, *, with_errors: bool = True
) -> np.ndarray:
    """RGB array: GT overlay | prediction overlay (| error map) for one frame; prediction only without a GT file."""
    image = np.asarray(Image.open(frame).convert("RGB"))
    ids = np.asarray(Image.open(pred))
    truth = np.asarray(Image.open(gt)) if gt is not None and Path(gt).is_file() else None
    if truth is None or truth.ndim != 2 or truth.shape != ids.shape:
        return blend(image, colourise(ids, palette))
    return side_by_side(image, truth, ids, palette, with_errors=with_errors)


def frame_slider(frames: list[Path], preds: list[Path], labels: list[Path | None], palette: np.ndarray) -> Any:
    """An ipywidgets slider over the frames of a run showing ground truth | prediction | errors."""
    import ipywidgets as widgets

    def png(index: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(load_panel(frames[index], preds[index], labels[index], palette)).save(buf, format="PNG")
        return buf.getvalue()

    picture = widgets.Image(value=png(0), format="png")
    slider = widgets.IntSlider(value=0, min=0, max=len(frames) - 1, description="frame", continuous_update=False)
    caption = widgets.Label(value=frames[0].name)

    def show(change: dict) -> None:
        picture.value = png(change["new"])
        caption.value = frames[change["new"]].name

    slider.observe(show, names="value")
    return widgets.VBox([widgets.HBox([slider, caption]), picture])
