"""DINO multi-crop augmentation on torchvision transforms v2, as the reference DINO trainer.

Per crop: random-resized crop (bicubic, aspect 3/4-4/3) -> horizontal flip (p 0.5) -> colour jitter
(0.4, 0.4, 0.2, 0.1; random order) with p 0.8 -> grayscale p 0.2 -> Pillow Gaussian blur (radius U(0.1, 2.0),
applied when ``u <= p``) -> solarisation at 128 (global crop 2 only, applied when ``u < p``) -> to-tensor ->
ImageNet normalisation. Blur probabilities are 1.0 / 0.1 / 0.5 for global 1 / global 2 / locals.

Deviation (modern mode): blur and solarisation draw from the torch RNG instead of Python's unseeded
``random``, so a per-sample seed makes every crop reproducible (see :class:`dino_lib.data.image_folder.SeededCrops`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import InterpolationMode, v2

from dino_lib.data.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DataAugmentationDINO", "PILGaussianBlur", "PILSolarize"]

# The reference's augmentation settings, stated once: the batched pipeline (dino_lib.data.crop_params) draws with
# the same values.
CROP_RATIO = (3 / 4, 4 / 3)  # aspect-ratio range of RandomResizedCrop
P_FLIP, P_JITTER, P_GRAY = 0.5, 0.8, 0.2
JITTER_STRENGTH = (0.4, 0.4, 0.2, 0.1)  # ColorJitter brightness, contrast, saturation, hue
BLUR_RADIUS = (0.1, 2.0)  # Pillow Gaussian blur radius range
P_BLUR_GLOBAL_1, P_BLUR_GLOBAL_2, P_BLUR_LOCAL = 1.0, 0.1, 0.5
P_SOLARIZE, SOLARIZE_THRESHOLD = 0.2, 128  # global crop 2 only


class PILGaussianBlur:
    """Pillow Gaussian blur with probability ``p`` (``u <= p``) and radius uniform in ``[radius_min, radius_max]``."""

    def __init__(self, p: float = 0.5, radius_min: float = BLUR_RADIUS[0], radius_max: float = BLUR_RADIUS[1]) -> None:
        self.p, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img: Image.Image) -> Image.Image:
        u, r = torch.rand(2).tolist()
        if u > self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=self.radius_min + r * (self.radius_max - self.radius_min)))

    def __repr__(self) -> str:
        return f"PILGaussianBlur(p={self.p}, radius=({self.radius_min}, {self.radius_max}))"


class PILSolarize:
    """Pillow solarisation (pixels >= ``threshold`` inverted) with probability ``p`` (``u < p``)."""

    def __init__(self, p: float = P_SOLARIZE, threshold: int = SOLARIZE_THRESHOLD) -> None:
        self.p, self.threshold = p, threshold

    def __call__(self, img: Image.Image) -> Image.Image:
        if torch.rand(1).item() < self.p:
            return ImageOps.solarize(img, threshold=self.threshold)
        return img

    def __repr__(self) -> str:
        return f"PILSolarize(p={self.p}, threshold={self.threshold})"


def _flip_and_color() -> list:
    return [
        v2.RandomHorizontalFlip(p=P_FLIP),
        v2.RandomApply([v2.ColorJitter(*JITTER_STRENGTH)], p=P_JITTER),
        v2.RandomGrayscale(p=P_GRAY),
    ]


def _normalize(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


class DataAugmentationDINO:
    """Turn one PIL image into ``[global_1, global_2, local_1, ..., local_n]`` normalised ``(3, H, W)`` tensors.

    Args:
        global_crops_scale: area-scale range of the two global crops ((0.4, 1.0)).
        local_crops_scale: area-scale range of the local crops ((0.05, 0.4)).
        local_crops_number: number of local crops (0 disables multi-crop).
        global_crops_size: output side of global crops (224).
        local_crops_size: output side of local crops (96).
        mean, std: normalisation (ImageNet by default).
    """

    def __init__(
        self,
        global_crops_scale: Sequence[float] = (0.4, 1.0),
        local_crops_scale: Sequence[float] = (0.05, 0.4),
        local_crops_number: int = 8,
        global_crops_size: int = 224,
        local_crops_size: int = 96,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        bicubic = InterpolationMode.BICUBIC

        def crop(size: int, scale: Sequence[float]) -> v2.RandomResizedCrop:
            return v2.RandomResizedCrop(size, scale=tuple(scale), ratio=CROP_RATIO, interpolation=bicubic)

        norm = _normalize(mean, std)
        self.global_transfo1 = v2.Compose(
            [crop(global_crops_size, global_crops_scale), *_flip_and_color(), PILGaussianBlur(P_BLUR_GLOBAL_1), *norm]
        )
        self.global_transfo2 = v2.Compose(
            [
                crop(global_crops_size, global_crops_scale),
                *_flip_and_color(),
                PILGaussianBlur(P_BLUR_GLOBAL_2),
                PILSolarize(P_SOLARIZE),
                *norm,
            ]
        )
        self.local_transfo = v2.Compose(
            [crop(local_crops_size, local_crops_scale), *_flip_and_color(), PILGaussianBlur(P_BLUR_LOCAL), *norm]
        )
        self.local_crops_number = local_crops_number

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        crops = [self.global_transfo1(image), self.global_transfo2(image)]
        crops += [self.local_transfo(image) for _ in range(self.local_crops_number)]
        return crops
