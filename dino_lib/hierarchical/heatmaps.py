"""Hierarchical (HIPT) attention heat maps for one region (docs/hierarchical.md).

Two levels of last-block CLS attention, per head:

* **tile level** - the stage-1 ViT's CLS -> patch attention inside every tile ``(N, heads, h, w)``, up-sampled
  (nearest) to the tile and assembled row-major into a region map;
* **region level** - the region ViT's CLS -> tile attention ``(heads, g_h, g_w)``, up-sampled by the tile size.

Each pass is normalised (percentile rank per tile - HIPT's tile level -, per region - HIPT's region level -,
min-max per region, or raw probabilities). **Shift averaging** really shifts the input (the reference class method
re-scores the unshifted region): the region is cropped by ``s`` px at the top-left and padded with white at the
bottom-right, the pass's map is moved back by ``s`` and accumulated; the sum is divided by the number of passes
covering each pixel. Defaults follow HIPT: shifts ``0, t/2, t, 3t/2`` at the region level and ``0, t/2`` at the
tile level (t = tile size). Maps are returned as arrays in [0, 1] at ``1 / scale`` of the region resolution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from dino_lib.hierarchical.composer import HIPTComposer, as_image_tensor
from dino_lib.hierarchical.tiling import fit_region, sequence_to_grid, tile_region, untile_region
from dino_lib.models.vit import explicit_attention
from dino_lib.utils.progress import progress_bar

__all__ = [
    "HIPTHeatmaps",
    "Normalization",
    "blend_levels",
    "hipt_attention",
    "hipt_heatmaps",
    "percentile_rank",
    "stitch_slide",
]

Normalization = Literal["tile", "region", "minmax", "raw"]


def percentile_rank(scores: torch.Tensor, dim_from: int) -> torch.Tensor:
    """Rank / count in (0, 1] over the flattened dims ``dim_from:`` (HIPT's percentile ranks, divided by 100)."""
    flat = scores.flatten(dim_from)
    ranks = flat.argsort(-1).argsort(-1).float().add_(1) / flat.shape[-1]
    return ranks.reshape(scores.shape)


def _normalise(scores: torch.Tensor, mode: Normalization, per_tile_from: int | None) -> torch.Tensor:
    """``scores`` (heads, ...) -> normalised; ``per_tile_from`` = first dim inside one tile (tile level only)."""
    if mode == "raw":
        return scores
    if mode == "tile":
        if per_tile_from is None:
            raise ValueError("normalization 'tile' applies to the tile level only; use 'region', 'minmax' or 'raw'")
        return percentile_rank(scores, per_tile_from)
    if mode == "region":
        return percentile_rank(scores, 1)
    if mode == "minmax":
        flat = scores.flatten(1)
        lo, hi = flat.min(-1).values, flat.max(-1).values
        shape = (-1,) + (1,) * (scores.ndim - 1)
        return (scores - lo.view(shape)) / (hi - lo).clamp_min(1e-12).view(shape)
    raise ValueError(f"unknown normalization {mode!r}; expected 'tile', 'region', 'minmax' or 'raw'")


@torch.no_grad()
def hipt_attention(composer: HIPTComposer, image: torch.Tensor) -> dict[str, Any]:
    """One pass on a fitted region ``(3, H, W)``: tile attention ``(N, heads, h, w)``, region ``(heads, g_h, g_w)``.

    The stage-1 forward runs once per tile batch: blocks before the last on the fused path, then the last
    block's explicit attention and output (CLS for the region ViT).
    """
    tiles, grid = tile_region(image, composer.tile_size)
    enc = composer.tile_encoder
    vit = enc.backbone
    cls_out, attn_out = [], []
    for chunk in tiles.split(composer.batch_size):
        x = enc.preprocess(chunk.to(composer.device))
        hw = (x.shape[-2] // vit.patch_size, x.shape[-1] // vit.patch_size)
        tokens = vit.prepare_tokens(x)
        for blk in vit.blocks[:-1]:
            tokens = blk(tokens)
        last = vit.blocks[-1]
        attn = explicit_attention(last.attn, last.norm1(tokens))  # (B, heads, T, T)
        prefix = attn.shape[-1] - hw[0] * hw[1]
        attn_out.append(attn[:, :, 0, prefix:].reshape(attn.shape[0], attn.shape[1], *hw).cpu())  # (B, heads, h, w)
        cls_out.append(vit.norm(last(tokens))[:, 0].float())
    emb = torch.cat(cls_out)  # (N, D)
    result: dict[str, Any] = {"tiles": torch.cat(attn_out), "grid": grid, "embeddings": emb.cpu()}
    if composer.region_vit is not None:
        region_grid = sequence_to_grid(emb, grid)[None]  # (1, D, g_h, g_w)
        attn = composer.region_vit.get_last_selfattention(region_grid)  # (1, heads, 1 + N, 1 + N)
        result["region"] = attn[0, :, 0, 1:].reshape(-1, *grid).cpu()  # (heads, g_h, g_w)
    return result


@dataclasses.dataclass
class HIPTHeatmaps:
    """Shift-averaged maps in [0, 1] (ranks) at ``1/scale`` resolution, plus the matching image."""

    image: np.ndarray  # (H', W', 3) uint8, the fitted region downscaled
    tile_maps: np.ndarray  # (heads_tile, H', W')
    region_maps: np.ndarray | None  # (heads_region, H', W')
    tile_passes: np.ndarray  # (H', W') number of passes covering each pixel
    region_passes: np.ndarray | None
    grid_hw: tuple[int, int]


def _tile_level_map(attn: torch.Tensor, grid: tuple[int, int], px: int, mode: Normalization) -> torch.Tensor:
    """``(N, heads, h, w)`` -> ``(heads, g_h * px, g_w * px)`` with each tile up-sampled to ``px`` (nearest)."""
    norm = _normalise(attn.transpose(0, 1), mode, per_tile_from=2)  # (heads, N, h, w)
    up = F.interpolate(norm.transpose(0, 1).float(), size=(px, px), mode="nearest")  # (N, heads, px, px)
    return untile_region(up, grid)  # (heads, g_h*px, g_w*px)


def _region_level_map(attn: torch.Tensor, px: int, mode: Normalization) -> torch.Tensor:
    """``(heads, g_h, g_w)`` -> ``(heads, g_h * px, g_w * px)``."""
    norm = _normalise(attn, mode, per_tile_from=None)
    return F.interpolate(norm[None].float(), scale_factor=px, mode="nearest")[0]


def _shift(image: torch.Tensor, s: int) -> torch.Tensor:
    """Crop ``s`` px off the top-left and pad white at the bottom-right: same size, content moved by ``-s``."""
    if s == 0:
        return image
    return F.pad(image[:, s:, s:], (0, s, 0, s), value=1.0)


def hipt_heatmaps(
    composer: HIPTComposer,
    image: Any,
    *,
    scale: int = 4,
    tile_normalization: Normalization = "tile",
    region_normalization: Normalization = "region",
    tile_shifts: Sequence[int] | None = None,
    region_shifts: Sequence[int] | None = None,
) -> HIPTHeatmaps:
    """Tile- and region-level heat maps of one region image, shift-averaged.

    Args:
        composer: stage-1 encoder + region ViT (:func:`dino_lib.hierarchical.composer.load_hipt`).
        image: region image (PIL, array or tensor); fitted with the composer's pad mode.
        scale: output down-sampling factor (HIPT: 2 or 4); shifts and the tile size must be multiples of it.
        tile_normalization: ``"tile"`` (HIPT), ``"region"``, ``"minmax"`` or ``"raw"``.
        region_normalization: ``"region"`` (HIPT), ``"minmax"`` or ``"raw"``.
        tile_shifts / region_shifts: shifts in px; None = HIPT's ``(0, t/2)`` and ``(0, t/2, t, 3t/2)``.
    """
    t = composer.tile_size
    tile_shifts = list(tile_shifts) if tile_shifts is not None else [0, t // 2]
    region_shifts = list(region_shifts) if region_shifts is not None else [0, t // 2, t, 3 * t // 2]
    if composer.region_vit is None:
        region_shifts = []
    bad = [s for s in [t, *tile_shifts, *region_shifts] if s % scale or s < 0]
    if bad:
        raise ValueError(f"tile size and shifts {bad} must be non-negative multiples of scale={scale}")
    fitted = fit_region(as_image_tensor(image), t, composer.pad_mode, fill=1.0)  # (3, H, W)
    h, w = fitted.shape[-2] // scale, fitted.shape[-1] // scale
    acc: dict[str, torch.Tensor | None] = {"tile": None, "region": None}
    count = {"tile": torch.zeros(h, w), "region": torch.zeros(h, w)}
    grid = (fitted.shape[-2] // t, fitted.shape[-1] // t)
    shifts = sorted(set(tile_shifts) | set(region_shifts))
    for s in progress_bar(shifts, desc="HIPT heat maps (shifted inputs)", unit="shift"):
        res = hipt_attention(composer, _shift(fitted, s))
        o = s // scale
        levels = []
        if s in tile_shifts:
            levels.append(("tile", _tile_level_map(res["tiles"], res["grid"], t // scale, tile_normalization)))
        if s in region_shifts:
            levels.append(("region", _region_level_map(res["region"], t // scale, region_normalization)))
        for name, m in levels:  # m: (heads, h, w) of the shifted input; pixel (y, x) there is (y + o, x + o) here
            if acc[name] is None:
                acc[name] = torch.zeros(m.shape[0], h, w)
            acc[name][:, o:, o:] += m[:, : h - o, : w - o]
            count[name][o:, o:] += 1
    small = F.interpolate(fitted[None], size=(h, w), mode="area")[0] if scale > 1 else fitted
    img = (small.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    tile_maps = (acc["tile"] / count["tile"].clamp_min(1)).numpy()
    region_maps = (acc["region"] / count["region"].clamp_min(1)).numpy() if acc["region"] is not None else None
    return HIPTHeatmaps(img, tile_maps, region_maps, count["tile"].numpy(),
                        count["region"].numpy() if region_maps is not None else None, grid)  # fmt: skip


def blend_levels(maps: HIPTHeatmaps, tile_head: int, region_head: int, mode: str = "mean") -> np.ndarray:
    """Factorised map of one (region head, tile head) pair: pass-count-weighted mean, or product."""
    tile = maps.tile_maps[tile_head]
    if maps.region_maps is None:
        return tile
    region = maps.region_maps[region_head]
    if mode == "product":
        return tile * region
    if mode != "mean":
        raise ValueError(f"unknown blend mode {mode!r}; expected 'mean' or 'product'")
    wt, wr = maps.tile_passes, maps.region_passes
    return (tile * wt + region * wr) / np.maximum(wt + wr, 1)


def stitch_slide(maps: Sequence[np.ndarray], coords: Sequence[tuple[int, int]], *, scale: int) -> np.ndarray:
    """Whole-slide map from per-region maps ``(..., h, w)`` at level-0 top-left ``(x, y)``.

    Region ``i`` covers ``[y / scale, y / scale + h) x [x / scale, x / scale + w)`` of the canvas; overlapping
    regions are averaged and pixels covered by no region are NaN (background).
    """
    if len(maps) != len(coords) or not maps:
        raise ValueError(f"need one (x, y) per map; got {len(maps)} maps and {len(coords)} coordinates")
    lead = maps[0].shape[:-2]
    h_out = max(y // scale + m.shape[-2] for m, (_, y) in zip(maps, coords))
    w_out = max(x // scale + m.shape[-1] for m, (x, _) in zip(maps, coords))
    total = np.zeros((*lead, h_out, w_out))
    count = np.zeros((h_out, w_out))
    for m, (x, y) in zip(maps, coords):
        if x % scale or y % scale:
            raise ValueError(f"region origin ({x}, {y}) is not a multiple of scale={scale}")
        top, left = y // scale, x // scale
        total[..., top : top + m.shape[-2], left : left + m.shape[-1]] += m
        count[top : top + m.shape[-2], left : left + m.shape[-1]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
