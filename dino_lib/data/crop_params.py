"""Per-image multi-crop parameters for the batched DINO augmentation (the cheap, per-item half).

:class:`MultiCropParams` turns one PIL image into ``(base, params)``: ``base`` is the image resized so its shorter
side is ``base_size`` and centre-cropped to a ``(3, S, S)`` uint8 tensor (non-square images lose their edges), and
``params`` holds every random decision of every crop, drawn on that ``S x S`` base. The decisions are drawn from the
torch RNG with the same calls, in the same order and with the same probabilities as
:class:`dino_lib.data.augment.DataAugmentationDINO` (torchvision v2 ``RandomResizedCrop``, ``RandomHorizontalFlip``,
``RandomApply(ColorJitter)``, ``RandomGrayscale``, then the Pillow blur and solarisation), so under a per-sample seed
(:class:`dino_lib.data.image_folder.SeededCrops`) the crops are a pure function of ``(seed, epoch, index)``, and an
image that is already ``S x S`` gets exactly the decisions the PIL pipeline would take. The pixels are produced
later, for a whole batch at once, by :class:`dino_lib.data.batch_augment.BatchedMultiCrop`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from dino_lib.data.augment import (
    BLUR_RADIUS,
    CROP_RATIO,
    JITTER_STRENGTH,
    P_BLUR_GLOBAL_1,
    P_BLUR_GLOBAL_2,
    P_BLUR_LOCAL,
    P_FLIP,
    P_GRAY,
    P_JITTER,
    P_SOLARIZE,
)

__all__ = ["CropSpec", "MultiCropParams", "crop_specs", "sample_box", "base_image"]

RATIO = CROP_RATIO
# ColorJitter's factor ranges, derived from the strengths as torchvision does: 1 +- strength, hue +- strength
JITTER = tuple((1.0 - v, 1.0 + v) for v in JITTER_STRENGTH[:3]) + ((-JITTER_STRENGTH[3], JITTER_STRENGTH[3]),)
IDENTITY_FACTORS = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue factors that change nothing
SIGMA_RANGE = BLUR_RADIUS  # the reference's Pillow blur radius (a standard deviation in pixels)
_LOG_RATIO = torch.log(torch.tensor(RATIO))  # float32, as torchvision's, so the draws are the same numbers


@dataclass(frozen=True)
class CropSpec:
    """One crop kind: output side, area-scale range, blur and solarisation probabilities."""

    size: int
    scale: tuple[float, float]
    p_blur: float
    p_solarize: float = 0.0


def _pair(scale: Sequence[float]) -> tuple[float, float]:
    return float(scale[0]), float(scale[1])


def crop_specs(
    global_crops_scale: Sequence[float],
    local_crops_scale: Sequence[float],
    local_crops_number: int,
    global_crops_size: int,
    local_crops_size: int,
) -> list[CropSpec]:
    """The reference's crops: global 1 (blur p 1.0), global 2 (blur p 0.1, solarise p 0.2), locals (blur p 0.5)."""
    return [
        CropSpec(global_crops_size, _pair(global_crops_scale), P_BLUR_GLOBAL_1),
        CropSpec(global_crops_size, _pair(global_crops_scale), P_BLUR_GLOBAL_2, P_SOLARIZE),
        *[CropSpec(local_crops_size, _pair(local_crops_scale), P_BLUR_LOCAL) for _ in range(local_crops_number)],
    ]


def sample_box(height: int, width: int, scale: Sequence[float]) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` exactly as torchvision v2 ``RandomResizedCrop.make_params`` (ratio 3/4-4/3): area scale
    uniform, log-ratio uniform, 10 attempts, then the centre-crop fallback; the same torch RNG calls."""
    area = height * width
    log_ratio = _LOG_RATIO
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()  # type: ignore[arg-type]
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,)).item())
            j = int(torch.randint(0, width - w + 1, size=(1,)).item())
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(RATIO):
        w, h = width, int(round(width / min(RATIO)))
    elif in_ratio > max(RATIO):
        h, w = height, int(round(height * max(RATIO)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


_KEYS = ("box", "flip", "jitter", "order", "factors", "gray", "blur", "sigma", "solarize")
_DTYPES = (torch.float32, torch.bool, torch.bool, torch.int64, torch.float32, torch.bool, torch.bool, torch.float32,
           torch.bool)  # fmt: skip


def _sample_one(spec: CropSpec, side: int) -> tuple:
    """The decisions of one crop (in ``_KEYS`` order), drawn in the PIL pipeline's order: crop box, flip, jitter,
    grayscale, blur, solarisation."""
    box = sample_box(side, side, spec.scale)
    flip = bool(torch.rand(1) < P_FLIP)
    order, factors, jitter = [0, 1, 2, 3], IDENTITY_FACTORS, bool(torch.rand(1) < P_JITTER)
    if jitter:  # ColorJitter draws its order and factors only when RandomApply applies it
        order = torch.randperm(4).tolist()
        factors = tuple(float(torch.empty(1).uniform_(lo, hi).item()) for lo, hi in JITTER)
    gray = bool(torch.rand(1) < P_GRAY)
    u, r = torch.rand(2).tolist()
    blur, sigma = u <= spec.p_blur, SIGMA_RANGE[0] + r * (SIGMA_RANGE[1] - SIGMA_RANGE[0])
    solarize = bool(torch.rand(1) < spec.p_solarize) if spec.p_solarize else False
    return box, flip, jitter, order, factors, gray, blur, sigma, solarize


def base_image(image: Image.Image, size: int) -> torch.Tensor:
    """``(3, size, size)`` uint8: shorter side resized to ``size`` (bicubic, antialiased), then a centre crop."""
    if image.size != (size, size):
        image = TF.center_crop(TF.resize(image, size, interpolation=InterpolationMode.BICUBIC), [size, size])
    return TF.pil_to_tensor(image.convert("RGB"))


class MultiCropParams:
    """Dataset transform of the batched augmentation: PIL image -> ``(uint8 base (3, S, S), params)``.

    ``params`` maps names to tensors with one row per crop (global 1, global 2, locals): ``box`` (top, left, h, w
    in base pixels), ``flip``, ``jitter`` (applied), ``order`` (the 4 colour ops: 0 brightness, 1 contrast,
    2 saturation, 3 hue), ``factors`` (their factors; identity when not applied), ``gray``, ``blur``, ``sigma``,
    ``solarize``. The default collation stacks them into ``(B, ncrops, ...)``.
    """

    def __init__(self, specs: Sequence[CropSpec], base_size: int) -> None:
        self.specs, self.base_size = list(specs), base_size

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        base = base_image(image, self.base_size)
        columns = zip(*(_sample_one(spec, self.base_size) for spec in self.specs))
        return base, {key: torch.tensor(col, dtype=dt) for key, col, dt in zip(_KEYS, columns, _DTYPES)}

    def __repr__(self) -> str:
        return f"MultiCropParams(base_size={self.base_size}, specs={self.specs})"
