"""Pixel operations on a batch of float RGB images in ``[0, 1]`` with one factor per image.

Each function is torchvision.transforms.v2.functional's float-tensor kernel (``adjust_brightness``,
``adjust_contrast``, ``adjust_saturation``, ``adjust_hue``, ``rgb_to_grayscale``, ``solarize``, ``gaussian_blur``)
with the scalar factor replaced by a per-image tensor of shape ``(N,)``, so one call serves a batch whose images
drew different factors (the batched DINO augmentation, :mod:`dino_lib.data.batch_augment`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "grayscale",
    "solarize",
    "gaussian_blur",
    "blur_kernel_size",
]


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor.reshape(-1, 1, 1, 1)


def _blend(image1: torch.Tensor, image2: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = _per_image(ratio)
    return image1.mul(ratio).add_(image2 * (1.0 - ratio)).clamp_(0.0, 1.0)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma ``(N, 1, H, W)``: 0.2989 R + 0.587 G + 0.114 B, as torchvision."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(dim=-3)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return x.mul(_per_image(factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean luma of each image."""
    return _blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the luma image."""
    return _blend(x, grayscale(x), factor)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, _ = x.unbind(dim=-3)
    minc, maxc = torch.aminmax(x, dim=-3)
    eqc = maxc == minc
    ones = torch.ones_like(maxc)
    s = (maxc - minc) / torch.where(eqc, ones, maxc)
    divisor = torch.where(eqc, ones, maxc - minc).unsqueeze(-3)
    rc, gc, bc = ((maxc.unsqueeze(-3) - x) / divisor).unbind(dim=-3)
    not_r, is_g = maxc != r, maxc == g
    hg = (rc + 2.0 - bc) * (is_g & not_r)
    hr = (bc - gc) * ~not_r
    hb = (gc + 4.0 - rc) * (not_r & ~is_g)
    h = ((hr + hg + hb) * (1.0 / 6.0) + 1.0).fmod(1.0)
    return torch.stack((h, s, maxc), dim=-3)


_HSV_SELECT = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(dim=-3)
    h6 = h * 6
    i = torch.floor(h6)
    f = h6 - i
    q = ((1.0 - s * f) * v).clamp(0.0, 1.0)
    t = ((s * f + (1.0 - s)) * v).clamp(0.0, 1.0)
    p = ((1.0 - s) * v).clamp(0.0, 1.0)
    vpqt = torch.stack((v, p, q, t), dim=-3)
    select = _HSV_SELECT.to(x.device)[:, i.long().remainder(6)].moveaxis(0, -3)
    return vpqt.gather(-3, select)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``factor`` (in turns, within [-0.5, 0.5]) in HSV space (torchvision's, after Pillow)."""
    h, s, v = _rgb_to_hsv(x).unbind(dim=-3)
    h = (h + factor.reshape(-1, 1, 1)).remainder(1.0)
    return _hsv_to_rgb(torch.stack((h, s, v), dim=-3))


def solarize(x: torch.Tensor, threshold: float = 128 / 255) -> torch.Tensor:
    """Invert values ``>= threshold`` (the reference's Pillow solarisation at 128 of 255)."""
    return torch.where(x >= threshold, 1.0 - x, x)


def blur_kernel_size(sigma_max: float, side: int) -> int:
    """Odd kernel size covering +-3 sigma, at most ``2 side - 1`` (the widest reflect padding of a side-pixel image)."""
    return min(2 * math.ceil(3.0 * sigma_max) + 1, 2 * side - 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image, reflect padding (torchvision's ``gaussian_blur``): both
    passes are one grouped convolution over all images and channels."""
    n, c, hgt, wid = x.shape
    half = kernel_size // 2
    t = torch.linspace(-half, half, kernel_size, dtype=x.dtype, device=x.device)
    pdf = torch.exp(-0.5 * (t / sigma.reshape(-1, 1).to(x)) ** 2)
    kernel = (pdf / pdf.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n c, k)
    y = F.pad(x.reshape(1, n * c, hgt, wid), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, hgt, wid)
