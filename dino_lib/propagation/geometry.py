"""Frame geometry, frame pre-processing and prediction decoding.

Default mode ("resize", DINOv3 style): each side is scaled (optionally to a short side) and rounded **up** to a
multiple of the stride, so the feature grid covers the whole image exactly; labels are sampled at cell centres in
native pixels and soft predictions are resized bilinearly straight back to the native size. This fixes the
reference's misregistration (features covering only the top-left multiple of the patch size) without the 64-px
flooring of the DAVIS protocol, which lives in :mod:`dino_lib.propagation.parity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dino_lib.data.decode import load_rgb

__all__ = ["FrameGeometry", "resize_geometry", "read_frame", "frames_to_tensor", "decode_prediction", "upsample"]


@dataclass(frozen=True)
class FrameGeometry:
    """Native size, network input size and feature grid of a video's frames."""

    native_hw: tuple[int, int]
    input_hw: tuple[int, int]
    grid_hw: tuple[int, int]
    stride: int
    rule: str

    def to_dict(self) -> dict:
        return {
            "native_hw": list(self.native_hw),
            "input_hw": list(self.input_hw),
            "grid_hw": list(self.grid_hw),
            "stride": self.stride,
            "rule": self.rule,
        }


def resize_geometry(native_hw: tuple[int, int], stride: int, short_side: int | None = None) -> FrameGeometry:
    """Resize to an optional short side, each side rounded up to a multiple of ``stride``."""
    h, w = native_hw
    scale = 1.0 if short_side is None else short_side / min(h, w)
    ih, iw = math.ceil(round(h * scale, 6) / stride) * stride, math.ceil(round(w * scale, 6) / stride) * stride
    return FrameGeometry(native_hw, (ih, iw), (ih // stride, iw // stride), stride, "resize")


def read_frame(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (Pillow decode; grey and RGBA frames converted)."""
    return np.asarray(load_rgb(path))


def frames_to_tensor(
    frames: Sequence[np.ndarray],
    input_hw: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    antialias: bool = True,
    round_uint8: bool = False,
) -> torch.Tensor:
    """Stack, resize (bilinear, ``align_corners=False``) and normalise frames -> ``(B, 3, H', W')`` float32.

    Args:
        antialias: low-pass before downscaling (default mode); the reference (OpenCV ``INTER_LINEAR``) does not.
        round_uint8: round the resized image to uint8 before normalising, as an 8-bit OpenCV resize does.
    """
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()  # (B, 3, H, W) in 0..255
    if tuple(x.shape[-2:]) != tuple(input_hw):
        x = F.interpolate(x, size=input_hw, mode="bilinear", align_corners=False, antialias=antialias)
        if round_uint8:
            x = x.round().clamp(0, 255)
    x = x / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def upsample(soft: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(C, h, w)`` probabilities to ``size`` (``align_corners=False``)."""
    return F.interpolate(soft[None], size=size, mode="bilinear", align_corners=False)[0]


def decode_prediction(
    soft: torch.Tensor, channel_ids: Sequence[int], native_hw: tuple[int, int], *, void_id: int
) -> tuple[np.ndarray, torch.Tensor]:
    """Default decoding: bilinear probabilities to native size, argmax; the missing mass ``1 - sum`` competes as
    "void" (ignore cells propagate zero mass) and wins -> ``void_id``.

    Returns:
        ``(ids (H, W) uint8, probabilities (C, H, W) float32)``.
    """
    probs = upsample(soft, native_hw).clamp_min(0)  # (C, H, W)
    void = (1 - probs.sum(0, keepdim=True)).clamp_min(0)
    winner = torch.cat([probs, void]).argmax(0)  # (H, W); index C = void
    lut = torch.tensor(list(channel_ids) + [void_id], dtype=torch.long)
    return lut[winner].numpy().astype(np.uint8), probs
