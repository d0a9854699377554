"""``AttentionExplorer``: an ipywidgets explorer of a ViT's attention maps.

Controls: the image (a dropdown over a folder, plus an upload button), the block, the head (or their mean), the
attention-mass threshold (0 = no mask) and the overlay opacity. The picture (an ``ipywidgets.Image``) updates in
place. The forward pass runs once per (image, block); moving the head, threshold or opacity only re-renders from the
cached maps. Everything it draws comes from :mod:`dino_lib.attention` and :mod:`dino_lib.viz.attention`, so it runs
headless (papermill, nbval) exactly as in JupyterLab.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from dino_lib.attention.pipeline import ImageAttention, compute_image_maps
from dino_lib.attention.preprocess import list_images
from dino_lib.attention.threshold import mass_threshold, to_image_size
from dino_lib.viz.attention import HEAD_PALETTE, mask_overlay, normalize_maps, overlay, png_bytes

__all__ = ["AttentionExplorer"]

MEAN_HEAD = -1


class AttentionExplorer:
    """Interactive attention maps of ``model`` on a set of images.

    Args:
        model: a ViT (ours or timm) in eval mode.
        images: a folder (searched recursively), or a list of image paths.
        patch_size: the model's patch size.
        image_size: pre-processing size (int = shorter side, ``(H, W)`` = exact; see ``preprocess``).
        mode: ``"pad"`` or ``"reference"`` pre-processing.
        threshold: initial attention-mass threshold (0 or ``None`` = no mask).
        opacity: initial map opacity over the picture.
        max_images: keep the first N images of the folder.
        cmap: colormap of the overlay.
        dtype: autocast dtype for the forward pass.

    Example::

        explorer = AttentionExplorer(model, "images/", patch_size=8, image_size=480)
        explorer  # displays the controls and the picture
    """

    def __init__(
        self,
        model: nn.Module,
        images: str | Path | Sequence[str | Path],
        *,
        patch_size: int,
        image_size: int | tuple[int, int] | None = 224,
        mode: str = "pad",
        threshold: float | None = 0.6,
        opacity: float = 0.6,
        max_images: int | None = None,
        cmap: str = "inferno",
        dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model.eval()
        self.patch_size = patch_size
        self.image_size = image_size
        self.mode = mode
        self.cmap = cmap
        self.dtype = dtype
        files = list_images(images) if isinstance(images, str | Path) else [Path(p) for p in images]
        self._sources: dict[str, Path | np.ndarray] = {p.name: p for p in files[:max_images]}
        self._cache: dict[tuple[str, int], ImageAttention] = {}
        self.forward_passes = 0
        depth = len(model.blocks)
        heads = model.blocks[-1].attn.num_heads

        style = {"description_width": "80px"}
        wide = widgets.Layout(width="420px")
        self.image_select = widgets.Dropdown(options=list(self._sources), description="image", style=style, layout=wide)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
        self.block = widgets.IntSlider(
            value=depth - 1,
            min=0,
            max=depth - 1,
            description="block",
            style=style,
            layout=wide,
            continuous_update=False,
        )
        self.head = widgets.SelectionSlider(
            options=[("mean", MEAN_HEAD)] + [(str(j), j) for j in range(heads)],
            value=MEAN_HEAD,
            description="head",
            style=style,
            layout=wide,
            continuous_update=False,
        )
        self.threshold = widgets.FloatSlider(
            value=threshold or 0.0,
            min=0.0,
            max=1.0,
            step=0.05,
            description="threshold",
            style=style,
            layout=wide,
            continuous_update=False,
        )
        self.opacity = widgets.FloatSlider(
            value=opacity,
            min=0.0,
            max=1.0,
            step=0.05,
            description="opacity",
            style=style,
            layout=wide,
            continuous_update=False,
        )
        self.picture = widgets.Image(format="png", layout=widgets.Layout(max_width="640px"))
        self.status = widgets.Label()
        for control in (self.image_select, self.block, self.head, self.threshold, self.opacity):
            control.observe(self._on_change, names="value")
        self.upload.observe(self._on_upload, names="value")
        controls = widgets.VBox([self.image_select, self.upload, self.block, self.head, self.threshold, self.opacity])
        self.widget = widgets.VBox([widgets.HBox([controls, self.picture]), self.status])
        self.widget.add_class("dino-attention-explorer")
        if self._sources:
            self.update()

    # ------------------------------------------------------------------ data
    def maps(self, name: str | None = None, block: int | None = None) -> ImageAttention:
        """Cached maps ``(1, heads, h, w)`` of an image and block (one forward pass on a miss)."""
        name = name if name is not None else self.image_select.value
        block = block if block is not None else self.block.value
        key = (name, block)
        if key not in self._cache:
            (res,) = compute_image_maps(
                self.model,
                [self._sources[name]],
                patch_size=self.patch_size,
                image_size=self.image_size,
                mode=self.mode,
                layers=(block,),
                dtype=self.dtype,
                names=[name],
            )
            self._cache[key] = res
            self.forward_passes += 1
        return self._cache[key]

    def add_image(self, name: str, image: np.ndarray | str | Path) -> None:
        """Add an image (array or path) to the dropdown and select it."""
        self._sources[name] = image
        self.image_select.options = list(self._sources)
        self.image_select.value = name

    # ------------------------------------------------------------- rendering
    def render(self) -> np.ndarray:
        """The current picture ``(H, W, 3)`` uint8 for the current control values."""
        res = self.maps()
        grid = res.maps[0]  # (heads, h, w)
        head = self.head.value
        grid = grid.mean(dim=0) if head == MEAN_HEAD else grid[head]  # (h, w)
        smooth = to_image_size(grid, res.geometry, mode="bilinear").numpy()
        out = overlay(res.picture, normalize_maps(smooth), alpha=self.opacity.value, cmap=self.cmap)
        if self.threshold.value > 0:
            mask = to_image_size(mass_threshold(grid, self.threshold.value), res.geometry).numpy()
            color = HEAD_PALETTE[(head if head >= 0 else 0) % len(HEAD_PALETTE)]
            out = mask_overlay(out, mask, color=color, alpha=0.25)
        return out

    def update(self) -> None:
        """Re-render the picture in place."""
        self.picture.value = png_bytes(self.render())
        head = "mean" if self.head.value == MEAN_HEAD else f"head {self.head.value}"
        self.status.value = (
            f"{self.image_select.value} | block {self.block.value} | {head} | threshold {self.threshold.value:.2f}"
            f" | forward passes: {self.forward_passes}"
        )

    def _on_change(self, _change: dict) -> None:
        self.update()

    def _on_upload(self, change: dict) -> None:
        for item in change["new"] or ():
            with Image.open(io.BytesIO(bytes(item["content"]))) as img:
                self.add_image(f"upload:{item['name']}", np.asarray(img.convert("RGB")))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
