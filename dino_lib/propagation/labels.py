"""Compact label channels, ignore handling and label downsampling.

Only ids present in the reference label(s) get a channel (never 256 by default); a lookup maps channel -> global id
when predictions are written. The ignore id (255) carries **zero mass** (an all-zero label vector) unless it is
explicitly propagated as a class (``as_class``, the reference behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IgnoreHandling", "channel_ids_for", "merge_channel_ids", "encode_labels", "downsample_labels"]

IgnoreHandling = Literal["zero_mass", "as_class"]


def channel_ids_for(
    label: np.ndarray, *, ignore_id: int | None = 255, ignore: IgnoreHandling = "zero_mass", include: Sequence[int] = ()
) -> list[int]:
    """Sorted global ids that get a channel: ids present in ``label`` (plus ``include``), ignore dropped in zero-mass
    mode."""
    ids = {int(v) for v in np.unique(label)} | {int(v) for v in include}
    if ignore == "zero_mass" and ignore_id is not None:
        ids.discard(ignore_id)
    return sorted(ids)


def merge_channel_ids(current: Sequence[int], new: Sequence[int]) -> list[int]:
    """Existing channels keep their position; ids first seen in a new anchor are appended (continuous mode)."""
    known = set(current)
    return list(current) + [i for i in sorted(new) if i not in known]


def encode_labels(
    label: np.ndarray | torch.Tensor,
    channel_ids: Sequence[int],
    *,
    ignore_id: int | None = 255,
    ignore: IgnoreHandling = "zero_mass",
) -> torch.Tensor:
    """One-hot ``(C, h, w)`` float32 of an integer id map over ``channel_ids``.

    Ignore pixels (zero-mass mode) become all-zero vectors. Ids without a channel are an error (the caller builds
    the channel list from the same labels, so this only fires on inconsistent input).
    """
    lab = torch.as_tensor(np.asarray(label)).long()
    size = max(max(channel_ids, default=0), int(lab.max()) if lab.numel() else 0, ignore_id or 0) + 1
    lut = torch.full((size,), -1, dtype=torch.long)
    lut[torch.as_tensor(list(channel_ids), dtype=torch.long)] = torch.arange(len(channel_ids))
    idx = lut[lab]  # (h, w), -1 where no channel
    if ignore == "zero_mass" and ignore_id is not None:
        unknown = (idx < 0) & (lab != ignore_id)
    else:
        unknown = idx < 0
    if bool(unknown.any()):
        bad = sorted({int(v) for v in lab[unknown].unique()})
        raise ValueError(f"label ids {bad} have no channel (channels: {list(channel_ids)})")
    onehot = F.one_hot(idx.clamp_min(0), len(channel_ids)).permute(2, 0, 1).float()  # (C, h, w)
    return onehot * (idx >= 0).float()


def downsample_labels(
    label: np.ndarray,
    grid_hw: tuple[int, int],
    channel_ids: Sequence[int],
    *,
    mode: Literal["centre", "area"] = "centre",
    ignore_id: int | None = 255,
    ignore: IgnoreHandling = "zero_mass",
    covered_hw: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Native ``(H, W)`` id map -> ``(C, h, w)`` label map on the feature grid.

    Args:
        label: native-resolution id map.
        grid_hw: feature grid.
        channel_ids: channel -> global id.
        mode: ``centre`` samples the label at each cell's centre (nearest, like Pillow's NEAREST used by the DINO
            reference); ``area`` averages the one-hot over each cell (soft labels, as CRW).
        covered_hw: the native extent the grid covers (defaults to the whole label); a grid that covers a padded
            image sets it larger than the label, cells beyond the label are ignore.
    """
    hgt, wid = label.shape
    h, w = grid_hw
    ch, cw = covered_hw or (hgt, wid)
    if mode == "centre":
        rows = np.floor((np.arange(h) + 0.5) * ch / h).astype(np.int64)
        cols = np.floor((np.arange(w) + 0.5) * cw / w).astype(np.int64)
        fill = ignore_id if ignore_id is not None else 0
        padded = np.full((max(ch, hgt), max(cw, wid)), fill, dtype=np.int64)
        padded[:hgt, :wid] = label
        return encode_labels(padded[np.ix_(rows, cols)], channel_ids, ignore_id=ignore_id, ignore=ignore)
    if mode == "area":
        onehot = encode_labels(label, channel_ids, ignore_id=ignore_id, ignore=ignore)  # (C, H, W)
        onehot = F.pad(onehot, (0, max(cw - wid, 0), 0, max(ch - hgt, 0)))
        return F.adaptive_avg_pool2d(onehot[None], (h, w))[0]
    raise ValueError(f"label_downsample must be 'centre' or 'area', found {mode!r}")
