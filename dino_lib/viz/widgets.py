"""``AttentionExplorer``: an ipywidgets explorer of a ViT's attention maps.

Controls: the image (a dropdown, plus an upload button), the block, the head (or their mean), the attention-mass
threshold (0 = no mask) and the overlay opacity. The picture (an ``ipywidgets.Image``) updates in place. The maps
come from a :class:`dino_lib.attention.explorer.MapExplorer` (one forward pass per image and block, cached); moving
the head, threshold or opacity only re-draws. This module only lays out the controls and blends arrays, so it runs
headless (papermill, nbval) exactly as in JupyterLab.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
import numpy as np
from PIL import Image

from dino_lib.attention.explorer import MapExplorer
from dino_lib.attention.render import head_color, mask_overlay, normalize_maps, overlay
from dino_lib.utils.io import png_bytes

__all__ = ["AttentionExplorer"]

MEAN_HEAD = -1
_STYLE = {"description_width": "80px"}
_WIDE = {"width": "420px"}


def _slider(kind: type, description: str, **kw) -> widgets.Widget:
    """A labelled slider of the explorer's width that reports only on release."""
    return kind(description=description, style=_STYLE, layout=widgets.Layout(**_WIDE), continuous_update=False, **kw)


class AttentionExplorer:
    """Interactive attention maps of a :class:`~dino_lib.attention.explorer.MapExplorer`.

    Args:
        explorer: the images, the model and the cached maps.
        threshold: initial attention-mass threshold (0 or ``None`` = no mask).
        opacity: initial map opacity over the picture.
        cmap: colormap of the overlay.

    Example::

        maps = MapExplorer(model, "images/", patch_size=8, image_size=480)
        AttentionExplorer(maps)  # displays the controls and the picture
    """

    def __init__(
        self, explorer: MapExplorer, *, threshold: float | None = 0.6, opacity: float = 0.6, cmap: str = "inferno"
    ) -> None:
        self.explorer = explorer
        self.cmap = cmap
        self._build_controls(threshold, opacity)
        self.widget = self._layout()
        if explorer.names:
            self.update()

    def _build_controls(self, threshold: float | None, opacity: float) -> None:
        depth, heads = self.explorer.depth, self.explorer.num_heads
        self.image_select = widgets.Dropdown(
            options=self.explorer.names, description="image", style=_STYLE, layout=widgets.Layout(**_WIDE)
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
        self.block = _slider(widgets.IntSlider, "block", value=depth - 1, min=0, max=depth - 1)
        head_options = [("mean", MEAN_HEAD)] + [(str(j), j) for j in range(heads)]
        self.head = _slider(widgets.SelectionSlider, "head", options=head_options, value=MEAN_HEAD)
        self.threshold = _slider(widgets.FloatSlider, "threshold", value=threshold or 0.0, min=0.0, max=1.0, step=0.05)
        self.opacity = _slider(widgets.FloatSlider, "opacity", value=opacity, min=0.0, max=1.0, step=0.05)
        self.picture = widgets.Image(format="png", layout=widgets.Layout(max_width="640px"))
        self.status = widgets.Label()
        for control in (self.image_select, self.block, self.head, self.threshold, self.opacity):
            control.observe(self._on_change, names="value")
        self.upload.observe(self._on_upload, names="value")

    def _layout(self) -> widgets.VBox:
        controls = widgets.VBox([self.image_select, self.upload, self.block, self.head, self.threshold, self.opacity])
        box = widgets.VBox([widgets.HBox([controls, self.picture]), self.status])
        box.add_class("dino-attention-explorer")
        return box

    @property
    def forward_passes(self) -> int:
        """Forward passes run so far (one per image and block)."""
        return self.explorer.forward_passes

    def add_image(self, name: str, image: np.ndarray) -> None:
        """Add an image (array or path) to the dropdown and select it."""
        self.explorer.add_image(name, image)
        self.image_select.options = self.explorer.names
        self.image_select.value = name

    # ------------------------------------------------------------- rendering
    def render(self) -> np.ndarray:
        """The current picture ``(H, W, 3)`` uint8 for the current control values."""
        name, block = self.image_select.value, self.block.value
        head = None if self.head.value == MEAN_HEAD else self.head.value
        picture = self.explorer.picture(name, block)
        smooth = self.explorer.head_map(name, block, head)
        out = overlay(picture, normalize_maps(smooth), alpha=self.opacity.value, cmap=self.cmap)
        if self.threshold.value > 0:
            mask = self.explorer.mask(name, block, head, self.threshold.value)
            out = mask_overlay(out, mask, color=head_color(head or 0), alpha=0.25)
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
