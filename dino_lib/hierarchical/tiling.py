"""Region tiling and the row-major region-tensor ordering contract.

A region image of ``H x W`` pixels is cut into ``g_h x g_w`` tiles of ``tile_size`` pixels. Tile ``k`` of the
sequence is the tile at grid row ``r`` (image y from ``r * t`` to ``(r + 1) * t``) and column ``c`` with
``k = r * g_w + c``. Every function here keeps that order, so image -> tiles -> sequence -> grid ->
tokens -> image round-trips exactly.

Unlike the references, a side that is not a multiple of the tile size is never truncated silently:
:func:`fit_region` raises, centre-crops, or pads with white on the bottom/right, as the caller chooses.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "PadMode",
    "fit_region",
    "tile_region",
    "untile_region",
    "sequence_to_grid",
    "grid_to_sequence",
    "parse_tile_name",
]

PadMode = Literal["error", "crop", "pad"]

# "<slide>_x<X>_y<Y>.<ext>" (our sample tiles) or "<slide>_<X>_<Y>.<ext>" / "<X>_<Y>.<ext>" (HS2P, HIPT)
_TILE_NAME = re.compile(r"^(?:(?P<slide>.+?)_)?x?(?P<x>\d+)_y?(?P<y>\d+)$")


def fit_region(
    image: torch.Tensor, tile_size: int, mode: PadMode = "error", fill: float = 1.0, name: str = "region"
) -> torch.Tensor:
    """Make both sides of ``image`` (``(..., H, W)``) multiples of ``tile_size``.

    Args:
        image: region image, channels first; float in [0, 1] (``fill`` 1.0 is white) or uint8 (``fill`` 255).
        tile_size: tile side in pixels.
        mode: ``"error"`` (reject a remainder), ``"crop"`` (centre-crop, as HIPT_4K) or ``"pad"`` (pad bottom and
            right with ``fill``, as HIPT's shifted heat-map passes).
        fill: padding value.
        name: used in the error message (e.g. the file name).

    Returns:
        The image with sides ``g_h * tile_size`` and ``g_w * tile_size``.
    """
    h, w = image.shape[-2:]
    if h % tile_size == 0 and w % tile_size == 0:
        return image
    if mode == "error":
        raise ValueError(
            f"{name}: size {h}x{w} px is not a multiple of the tile size {tile_size} px; "
            "set pad_mode='crop' (centre-crop) or pad_mode='pad' (white padding), or cut regions of a multiple size"
        )
    if mode == "crop":
        nh, nw = (h // tile_size) * tile_size, (w // tile_size) * tile_size
        if nh == 0 or nw == 0:
            raise ValueError(f"{name}: size {h}x{w} px is smaller than one tile of {tile_size} px")
        top, left = (h - nh) // 2, (w - nw) // 2
        return image[..., top : top + nh, left : left + nw]
    if mode == "pad":
        ph, pw = (-h) % tile_size, (-w) % tile_size
        return F.pad(image, (0, pw, 0, ph), value=fill)
    raise ValueError(f"unknown pad mode {mode!r}; expected 'error', 'crop' or 'pad'")


def tile_region(image: torch.Tensor, tile_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut ``(C, H, W)`` into row-major tiles ``(g_h * g_w, C, t, t)``; sides must be multiples of ``tile_size``.

    Returns:
        ``(tiles, (g_h, g_w))``.
    """
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) region image, found shape {tuple(image.shape)}")
    c, h, w = image.shape
    if h % tile_size or w % tile_size:
        raise ValueError(f"region {h}x{w} is not a multiple of tile size {tile_size}; call fit_region first")
    gh, gw = h // tile_size, w // tile_size
    tiles = image.reshape(c, gh, tile_size, gw, tile_size).permute(1, 3, 0, 2, 4)  # (g_h, g_w, C, t, t)
    return tiles.reshape(gh * gw, c, tile_size, tile_size), (gh, gw)


def untile_region(tiles: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`tile_region`: ``(g_h * g_w, C, t, t) -> (C, g_h * t, g_w * t)``."""
    gh, gw = grid_hw
    n, c, th, tw = tiles.shape
    if n != gh * gw:
        raise ValueError(f"{n} tiles do not fill a {gh}x{gw} grid")
    return tiles.reshape(gh, gw, c, th, tw).permute(2, 0, 3, 1, 4).reshape(c, gh * th, gw * tw)


def sequence_to_grid(seq: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Row-major ``(..., g_h * g_w, D)`` -> ``(..., D, g_h, g_w)`` with ``grid[:, r, c] = seq[r * g_w + c]``."""
    gh, gw = grid_hw
    if seq.shape[-2] != gh * gw:
        raise ValueError(f"sequence of {seq.shape[-2]} rows does not fill a {gh}x{gw} grid")
    grid = seq.reshape(*seq.shape[:-2], gh, gw, seq.shape[-1])  # (..., g_h, g_w, D)
    return grid.movedim(-1, -3)


def grid_to_sequence(grid: torch.Tensor) -> torch.Tensor:
    """Row-major flatten ``(..., D, g_h, g_w)`` -> ``(..., g_h * g_w, D)`` (inverse of :func:`sequence_to_grid`)."""
    return grid.flatten(-2).transpose(-1, -2)


def parse_tile_name(stem: str) -> tuple[str | None, int, int]:
    """Slide id and level-0 top-left ``(x, y)`` from a tile file stem.

    Accepts ``<slide>_x<X>_y<Y>``, ``<slide>_<X>_<Y>`` and ``<X>_<Y>`` (slide then comes from the folder).

    Raises:
        ValueError: the stem carries no coordinates.
    """
    match = _TILE_NAME.match(stem)
    if not match:
        raise ValueError(
            f"tile file name {stem!r} carries no grid coordinates; expected '<slide>_x<X>_y<Y>' or '<X>_<Y>'"
        )
    return match.group("slide"), int(match.group("x")), int(match.group("y"))
