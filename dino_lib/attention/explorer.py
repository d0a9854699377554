"""``MapExplorer``: the maps behind an interactive attention explorer, as arrays, computed on demand and cached.

One forward pass per (image, block); a head, a threshold or the mean over heads only re-reads the cached maps.
:class:`dino_lib.viz.widgets.AttentionExplorer` lays out the controls and draws what this returns; used alone it
answers the same questions in a script::

    explorer = MapExplorer(model, "images/", patch_size=8, image_size=480)
    smooth = explorer.head_map("cat.jpg", block=11, head=None)       # (H, W) mean over heads, bilinear
    mask = explorer.mask("cat.jpg", block=11, head=0, threshold=0.6)  # (H, W) bool
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from dino_lib.attention.pipeline import ImageAttention, compute_image_maps
from dino_lib.attention.preprocess import list_images
from dino_lib.attention.threshold import mass_threshold, to_image_size

__all__ = ["MapExplorer"]


class MapExplorer:
    """Cached attention maps of ``model`` on a set of images.

    Args:
        model: a ViT (ours or timm) in eval mode.
        images: a folder (searched recursively), or a list of image paths.
        patch_size: the model's patch size.
        image_size: pre-processing size (int = shorter side, ``(H, W)`` = exact; see ``preprocess``).
        mode: ``"pad"`` or ``"reference"`` pre-processing.
        max_images: keep the first N images of the folder.
        dtype: autocast dtype for the forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        images: str | Path | Sequence[str | Path],
        *,
        patch_size: int,
        image_size: int | tuple[int, int] | None = 224,
        mode: str = "pad",
        max_images: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model.eval()
        self.patch_size = patch_size
        self.image_size = image_size
        self.mode = mode
        self.dtype = dtype
        files = list_images(images) if isinstance(images, str | Path) else [Path(p) for p in images]
        self._sources: dict[str, Path | np.ndarray] = {p.name: p for p in files[:max_images]}
        self._cache: dict[tuple[str, int], ImageAttention] = {}
        self.forward_passes = 0

    @property
    def names(self) -> list[str]:
        """The image names, in order (uploaded images last)."""
        return list(self._sources)

    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.model.blocks)

    @property
    def num_heads(self) -> int:
        """Heads of the last block."""
        return int(self.model.blocks[-1].attn.num_heads)

    def add_image(self, name: str, image: np.ndarray | str | Path) -> None:
        """Add an image (``(H, W, 3)`` uint8 array or path) under ``name``."""
        self._sources[name] = image

    def maps(self, name: str, block: int) -> ImageAttention:
        """Cached maps ``(1, heads, h, w)`` of an image and block (one forward pass on a miss)."""
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

    def picture(self, name: str, block: int) -> np.ndarray:
        """``(H, W, 3)`` uint8: the pre-processed picture the maps of ``block`` cover."""
        return self.maps(name, block).picture

    def grid_map(self, name: str, block: int, head: int | None = None) -> torch.Tensor:
        """``(h, w)`` map on the patch grid of one head, or the mean over heads (``head=None``)."""
        grid = self.maps(name, block).maps[0]  # (heads, h, w)
        return grid.mean(dim=0) if head is None else grid[head]  # (h, w)

    def head_map(self, name: str, block: int, head: int | None = None) -> np.ndarray:
        """``(H, W)`` map at picture size (bilinear) of one head, or the mean over heads (``head=None``)."""
        res = self.maps(name, block)
        return to_image_size(self.grid_map(name, block, head), res.geometry, mode="bilinear").numpy()

    def mask(self, name: str, block: int, head: int | None, threshold: float) -> np.ndarray:
        """``(H, W)`` bool: the patches holding ``threshold`` of the map's attention mass, at picture size."""
        res = self.maps(name, block)
        grid = self.grid_map(name, block, head)
        return to_image_size(mass_threshold(grid, threshold), res.geometry).numpy().astype(bool)
