"""Image pre-processing for attention maps and the geometry that maps patch grids back to pixels.

Two presets:

* ``"reference"`` (``dino_v1_visualize``): torchvision ``Resize(image_size)`` (two integers = exact size, distorting
  the aspect ratio; one integer = shorter side), ImageNet normalisation, **top-left crop** to multiples of the patch
  size; maps are up-sampled ×p (nearest) to the cropped size.
* ``"pad"`` (the modern default): aspect-preserving resize of the shorter side, then **pad** bottom/right to whole
  patches (padding is zero after normalisation, i.e. the mean colour); maps are up-sampled ×p and the padding is cut
  off, so they cover exactly the resized image.

:class:`Geometry` records every step, so that a map can always be placed on the original picture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dino_lib.data.decode import load_rgb
from dino_lib.data.image_folder import IMAGE_EXTENSIONS as IMAGE_SUFFIXES
from dino_lib.data.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["Geometry", "Preprocessing", "IMAGE_SUFFIXES", "list_images", "load_image", "preprocess", "denormalize"]

Preprocessing = Literal["reference", "pad"]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where a patch grid lies on an image.

    Attributes:
        original_hw: size of the image as read.
        resized_hw: size after the resize step (the picture the maps are shown on).
        input_hw: size of the network input (cropped or padded to whole patches).
        grid_hw: patch grid ``(h, w)``.
        patch_size: p.
        pad_hw: rows/columns of padding added at the bottom/right (``"pad"``); 0 for ``"reference"``.
        cropped_hw: rows/columns dropped at the bottom/right (``"reference"``; the reference crops them silently).
    """

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    input_hw: tuple[int, int]
    grid_hw: tuple[int, int]
    patch_size: int
    pad_hw: tuple[int, int] = (0, 0)
    cropped_hw: tuple[int, int] = (0, 0)

    @property
    def display_hw(self) -> tuple[int, int]:
        """Size of the picture that up-sampled maps cover (resized minus crop)."""
        return (self.resized_hw[0] - self.cropped_hw[0], self.resized_hw[1] - self.cropped_hw[1])


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); raises when there are none."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist; pass an existing folder or image file")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    return files


def load_image(source: str | Path | Image.Image | np.ndarray) -> Image.Image:
    """An RGB Pillow image from a path, a Pillow image or an ``(H, W, 3)`` uint8 array."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if isinstance(source, np.ndarray):
        return Image.fromarray(source).convert("RGB")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist (nothing is downloaded; pass a local file)")
    return load_rgb(path)


def _resized_hw(hw: tuple[int, int], image_size: int | Sequence[int] | None) -> tuple[int, int]:
    h, w = hw
    if image_size is None:
        return hw
    if isinstance(image_size, int):
        # torchvision Resize(int): shorter side -> image_size, the other side truncated like torchvision
        if h <= w:
            return image_size, int(image_size * w / h)
        return int(image_size * h / w), image_size
    if len(image_size) == 1:
        return _resized_hw(hw, int(image_size[0]))
    if len(image_size) != 2:
        raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def preprocess(
    image: str | Path | Image.Image | np.ndarray,
    *,
    patch_size: int,
    image_size: int | Sequence[int] | None = None,
    mode: Preprocessing = "pad",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, np.ndarray, Geometry]:
    """Prepare one image for attention extraction.

    Args:
        image: path, Pillow image or uint8 array.
        patch_size: the ViT's patch size.
        image_size: ``None`` keeps the size; an int resizes the shorter side; ``(H, W)`` resizes exactly (the
            reference default ``(480, 480)`` distorts the aspect ratio).
        mode: ``"reference"`` (top-left crop) or ``"pad"`` (aspect kept, padded).
        mean, std: normalisation of the weights (ImageNet for DINO).

    Returns:
        ``(tensor (3, H', W'), picture (H, W, 3) uint8 that maps cover, geometry)``.
    """
    if mode not in ("reference", "pad"):
        raise ValueError(f"preprocessing mode must be 'reference' or 'pad', got {mode!r}")
    if mode == "pad" and image_size is not None and not isinstance(image_size, int) and len(image_size) == 2:
        raise ValueError("mode='pad' keeps the aspect ratio: pass image_size as one integer (shorter side) or None")
    img = load_image(image)
    original_hw = (img.height, img.width)
    resized_hw = _resized_hw(original_hw, image_size)
    if resized_hw != original_hw:
        img = img.resize((resized_hw[1], resized_hw[0]), Image.BILINEAR)
    picture = np.asarray(img, dtype=np.uint8).copy()  # (H, W, 3)
    x = torch.from_numpy(picture).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    h, w = resized_hw
    p = patch_size
    if mode == "reference":
        hc, wc = h - h % p, w - w % p
        if hc == 0 or wc == 0:
            raise ValueError(f"image of size {resized_hw} is smaller than one {p}-px patch; use a larger image_size")
        x = x[:, :hc, :wc]
        picture = picture[:hc, :wc]
        geometry = Geometry(original_hw, resized_hw, (hc, wc), (hc // p, wc // p), p, cropped_hw=(h - hc, w - wc))
    else:
        ph, pw = (-h) % p, (-w) % p
        x = F.pad(x, (0, pw, 0, ph))  # zero = the normalised mean colour
        geometry = Geometry(original_hw, resized_hw, (h + ph, w + pw), ((h + ph) // p, (w + pw) // p), p, (ph, pw))
    return x, picture, geometry


def denormalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """``(3, H, W)`` normalised tensor -> ``(H, W, 3)`` uint8 picture."""
    img = x.detach().float().cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
