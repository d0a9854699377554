"""Parity mode: the DINO reference DAVIS-2017 protocol, reproduced deliberately (preset ``dino_v1``).

Every quirk below is the reference behaviour, kept on purpose:

* frame size: if H > W, width 480 and height ``floor(480·H/W/64)·64``, else height 480 and width
  ``floor(480·W/H/64)·64`` (854 x 480 -> 832 x 480; only the long side is floored);
* normalisation: mean (0.485, 0.456, 0.406), std **(0.228, 0.224, 0.225)** — the 0.228 is inherited from UVC;
* first-frame labels: Pillow NEAREST resize of the native annotation straight to ``(W'/p, H'/p)`` (patch centres);
  channels ``C = max id + 1`` (here: the present ids plus id 0, which gives identical argmax decisions, see
  :func:`parity_channel_ids`); void 255 is propagated as its own class, as in the reference;
* output: bilinear x p up-sampling (``align_corners=False``), per-channel min-max (``norm_mask``), argmax, Pillow
  NEAREST resize to the native size, indexed PNG with the DAVIS palette; the first frame's annotation is copied.

Known, documented deviations: frames are decoded with Pillow instead of OpenCV and resized with torch bilinear
(no antialiasing, rounded to uint8 like an 8-bit OpenCV resize), so inputs can differ by one grey level; features
are extracted in batches. Square frames raise an error because the reference's frame and label size rules disagree
for them and its propagation fails with a shape error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dino_lib.propagation.geometry import FrameGeometry

__all__ = [
    "DAVIS_MEAN",
    "DAVIS_STD",
    "davis_geometry",
    "parity_channel_ids",
    "parity_downsample_labels",
    "norm_mask",
    "parity_decode",
]

DAVIS_MEAN = (0.485, 0.456, 0.406)
DAVIS_STD = (0.228, 0.224, 0.225)  # sic: 0.228, not ImageNet's 0.229 (reference quirk)


def davis_geometry(native_hw: tuple[int, int], stride: int, short: int = 480, multiple: int = 64) -> FrameGeometry:
    """The reference ``read_frame`` size rule; raises for square frames (a latent bug of the reference)."""
    h, w = native_hw
    if h == w:
        raise ValueError(
            f"parity mode cannot process square frames ({h} x {w}): the reference's frame and label size rules "
            "disagree for them and its propagation fails; use protocol 'default'"
        )
    if h > w:
        ih, iw = int(short * h / w / multiple) * multiple, short
    else:
        ih, iw = short, int(short * w / h / multiple) * multiple
    return FrameGeometry(native_hw, (ih, iw), (ih // stride, iw // stride), stride, "davis_parity")


def parity_channel_ids(label: np.ndarray) -> list[int]:
    """Present ids plus 0. The reference allocates ``max id + 1`` channels; channels of absent ids are zero
    everywhere, so dropping them leaves every argmax (first index on ties, id order kept) unchanged as long as id 0
    keeps its channel (it wins pixels where all channels are zero)."""
    return sorted({int(v) for v in np.unique(label)} | {0})


def parity_downsample_labels(label: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """Pillow NEAREST from the native annotation straight to the feature grid ``(W'/p, H'/p)``."""
    h, w = geometry.grid_hw
    return np.asarray(Image.fromarray(label.astype(np.uint8)).resize((w, h), Image.NEAREST))


def norm_mask(mask: torch.Tensor) -> torch.Tensor:
    """Per-channel min-max of ``(C, H, W)``: channels whose max is > 0 get ``(x - min) / max(x - min)`` (UVC/DINO)."""
    out = mask.clone()
    for c in range(mask.shape[0]):  # C is small; the reference's loop, kept readable
        channel = mask[c]
        if channel.max() > 0:
            channel = channel - channel.min()
            out[c] = channel / channel.max()
    return out


def parity_decode(
    soft: torch.Tensor, channel_ids: Sequence[int], geometry: FrameGeometry, *, with_probs: bool = True
) -> tuple[np.ndarray, torch.Tensor | None]:
    """Bilinear x stride, ``norm_mask``, argmax, Pillow NEAREST to native.

    Returns:
        ``(ids (H, W) uint8, probabilities (C, H, W) float32 at native size before norm_mask, or None)``.
    """
    ih, iw = geometry.input_hw
    up = F.interpolate(soft[None], scale_factor=geometry.stride, mode="bilinear", align_corners=False)[0]
    up = up[:, :ih, :iw]  # (C, H', W')
    winner = norm_mask(up).argmax(0)  # (H', W')
    lut = np.asarray(list(channel_ids), dtype=np.uint8)
    ids = lut[winner.numpy()]
    h, w = geometry.native_hw
    ids = np.asarray(Image.fromarray(ids).resize((w, h), Image.NEAREST))
    if not with_probs:
        return ids, None
    probs = F.interpolate(up[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return ids, probs
