"""Multi-crop augmentation on token grids for region-level DINO.

Faithful mode: the ``[g*g, D]`` region tensor is reshaped row-major to ``[D, g, g]``; 2 global crops are random
``global_size x global_size`` windows and ``n_local`` local crops random ``local_size`` windows, each drawn
independently, each horizontally flipped with p = 0.5. Sizes are exact token windows (no resizing); the
reference derives them as ``int(0.875 * g)`` and ``int(0.375 * g)`` (14 and 6 for g = 16).

Improvements, off by default: vertical flips and 90-degree rotations (tissue has no canonical
orientation); sizes validated against the grid with a clear error (``1 <= local < global <= g``).
"""

from __future__ import annotations

import torch

from dino_lib.hierarchical.tiling import sequence_to_grid

__all__ = ["CropSizeError", "derive_crop_sizes", "validate_crop_sizes", "RegionCrops"]


class CropSizeError(ValueError):
    """Crop sizes that do not fit the region grid."""


def derive_crop_sizes(g: int, global_scale: float = 0.875, local_scale: float = 0.375) -> tuple[int, int]:
    """Reference crop sides ``(int(global_scale * g), int(local_scale * g))``; scales are fractions of the side."""
    return int(global_scale * g), int(local_scale * g)


def validate_crop_sizes(g: int, global_size: int, local_size: int, n_local: int = 8) -> None:
    """Raise :class:`CropSizeError` unless ``1 <= local_size < global_size <= g`` (local unused when n_local = 0)."""
    if g < 1:
        raise CropSizeError(f"region grid g={g} must be >= 1 tile per side")
    if global_size > g:
        raise CropSizeError(
            f"global crop {global_size}x{global_size} tokens is larger than the region grid {g}x{g}; use "
            f"global_crop_size <= {g} (reference: int(0.875 * g) = {int(0.875 * g)}) or larger regions"
        )
    if global_size < 1:
        raise CropSizeError(
            f"global crop side {global_size} < 1 for a {g}x{g} grid; set global_crop_size explicitly (1..{g})"
        )
    if n_local > 0 and not 1 <= local_size < global_size:
        raise CropSizeError(
            f"local crop {local_size}x{local_size} must satisfy 1 <= local < global ({global_size}) on a {g}x{g} "
            f"grid; set local_crop_size to 1..{global_size - 1} (or local_crops_number=0)"
        )


class RegionCrops:
    """Callable ``[g*g, D] -> [2 global crops, n_local local crops]``, each ``[D, s, s]``.

    Args:
        g: grid side of the region tensors.
        global_size, local_size: crop sides in tokens (see :func:`derive_crop_sizes`).
        n_local: number of local crops (8 in the reference).
        n_global: number of global crops (2).
        hflip: horizontal-flip probability (0.5, reference).
        vflip: vertical-flip probability (0, improvement).
        rot90: rotate each crop by a random multiple of 90 degrees (False, improvement).
        generator: optional ``torch.Generator`` for reproducible crops.
    """

    def __init__(
        self,
        g: int,
        global_size: int,
        local_size: int,
        *,
        n_local: int = 8,
        n_global: int = 2,
        hflip: float = 0.5,
        vflip: float = 0.0,
        rot90: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        validate_crop_sizes(g, global_size, local_size, n_local)
        self.g, self.global_size, self.local_size = g, global_size, local_size
        self.n_global, self.n_local = n_global, n_local
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90
        self.generator = generator

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def _crop(self, grid: torch.Tensor, size: int) -> torch.Tensor:
        top = int(torch.randint(0, self.g - size + 1, (), generator=self.generator))
        left = int(torch.randint(0, self.g - size + 1, (), generator=self.generator))
        crop = grid[:, top : top + size, left : left + size]  # (D, s, s)
        if self.hflip > 0 and self._rand() < self.hflip:
            crop = crop.flip(-1)
        if self.vflip > 0 and self._rand() < self.vflip:
            crop = crop.flip(-2)
        if self.rot90:
            k = int(torch.randint(0, 4, (), generator=self.generator))
            crop = torch.rot90(crop, k, dims=(-2, -1))
        # a float32 copy: the crop does not keep the whole region alive, and only crop tokens are converted
        return crop.to(torch.float32, memory_format=torch.contiguous_format, copy=True)

    accepts_half = True  # takes the fp16 region as stored and returns float32 crops

    def __call__(self, region: torch.Tensor) -> list[torch.Tensor]:
        grid = sequence_to_grid(region, (self.g, self.g))  # (D, g, g), grid[:, r, c] = region[r * g + c]
        crops = [self._crop(grid, self.global_size) for _ in range(self.n_global)]
        crops += [self._crop(grid, self.local_size) for _ in range(self.n_local)]
        return crops

    def __repr__(self) -> str:
        return (
            f"RegionCrops(g={self.g}, global={self.n_global}x{self.global_size}, local={self.n_local}x"
            f"{self.local_size}, hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90})"
        )
