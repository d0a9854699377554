"""Region crops on token grids and their size validation."""

from __future__ import annotations

import pytest
import torch

from dino_lib.hierarchical.crops import CropSizeError, RegionCrops, derive_crop_sizes, validate_crop_sizes
from dino_lib.hierarchical.tiling import sequence_to_grid


@pytest.mark.parametrize(
    "region,tile,g,global_size,local_size",
    [(4096, 256, 16, 14, 6), (2048, 256, 8, 7, 3), (1024, 256, 4, 3, 1), (4096, 512, 8, 7, 3)],
)
def test_reference_crop_size_table(region: int, tile: int, g: int, global_size: int, local_size: int) -> None:
    assert region // tile == g
    assert derive_crop_sizes(g) == (global_size, local_size)
    validate_crop_sizes(g, global_size, local_size)


@pytest.mark.parametrize(
    "g,global_size,local_size,message",
    [
        (4, 14, 6, "global crop 14x14 tokens is larger than the region grid 4x4"),
        (4, 5, 2, "larger than the region grid"),
        (2, 1, 0, r"local crop 0x0 must satisfy 1 <= local < global"),
        (4, 3, 3, r"local crop 3x3 must satisfy 1 <= local < global \(3\)"),
        (1, 0, 0, r"global crop side 0 < 1"),
    ],
)
def test_crop_size_errors(g: int, global_size: int, local_size: int, message: str) -> None:
    with pytest.raises(CropSizeError, match=message):
        validate_crop_sizes(g, global_size, local_size)


def test_crops_are_windows_of_the_grid() -> None:
    g, d = 6, 5
    region = torch.randn(g * g, d)
    grid = sequence_to_grid(region, (g, g))
    crops = RegionCrops(g, 4, 2, n_local=3, hflip=0.5, generator=torch.Generator().manual_seed(0))(region)
    assert [tuple(c.shape) for c in crops] == [(d, 4, 4)] * 2 + [(d, 2, 2)] * 3
    for crop in crops:
        s = crop.shape[-1]
        windows = [grid[:, r : r + s, c : c + s] for r in range(g - s + 1) for c in range(g - s + 1)]
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(-1)) for w in windows)


def test_flip_and_rotation_options() -> None:
    g = 4
    region = torch.arange(g * g, dtype=torch.float32)[:, None]  # D = 1, value = tile index
    plain = RegionCrops(g, 4, 2, n_local=0, hflip=0.0)(region)[0]
    assert torch.equal(plain, sequence_to_grid(region, (g, g)))
    flipped = RegionCrops(g, 4, 2, n_local=0, hflip=1.0)(region)[0]
    assert torch.equal(flipped, plain.flip(-1))
    vflipped = RegionCrops(g, 4, 2, n_local=0, hflip=0.0, vflip=1.0)(region)[0]
    assert torch.equal(vflipped, plain.flip(-2))
    gen = torch.Generator().manual_seed(1)
    rotated = [RegionCrops(g, 4, 2, n_local=0, hflip=0.0, rot90=True, generator=gen)(region)[0] for _ in range(16)]
    seen = {k for k in range(4) for r in rotated if torch.equal(r, torch.rot90(plain, k, dims=(-2, -1)))}
    assert seen == {0, 1, 2, 3}
