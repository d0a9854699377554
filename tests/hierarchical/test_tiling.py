"""Ordering contract: image -> tiles -> sequence -> grid -> tokens -> image."""

from __future__ import annotations

import pytest
import torch

from dino_lib.hierarchical.tiling import (
    fit_region,
    grid_to_sequence,
    parse_tile_name,
    sequence_to_grid,
    tile_region,
    untile_region,
)


def _coded_image(gh: int, gw: int, t: int) -> torch.Tensor:
    """Each tile's pixels carry its own (row, col) code: channel 0 = row, channel 1 = col, channel 2 = noise."""
    rows = torch.arange(gh).repeat_interleave(t)[:, None].expand(gh * t, gw * t)
    cols = torch.arange(gw).repeat_interleave(t)[None, :].expand(gh * t, gw * t)
    return torch.stack([rows.float(), cols.float(), torch.rand(gh * t, gw * t)])


@pytest.mark.parametrize("gh,gw", [(4, 4), (3, 5), (1, 2)])
def test_round_trip_image_tiles_sequence_grid(gh: int, gw: int) -> None:
    t = 8
    image = _coded_image(gh, gw, t)
    tiles, grid = tile_region(image, t)
    assert grid == (gh, gw) and tiles.shape == (gh * gw, 3, t, t)
    for k in range(gh * gw):  # row-major: k = r * g_w + c, row = y
        r, c = divmod(k, gw)
        assert torch.all(tiles[k, 0] == r) and torch.all(tiles[k, 1] == c)
    assert torch.equal(untile_region(tiles, grid), image)
    # "embedding" of each tile = its (row, col) code + the mean of its noise channel
    seq = torch.stack([tiles[:, 0, 0, 0], tiles[:, 1, 0, 0], tiles[:, 2].mean((1, 2))], dim=1)  # (N, 3)
    grid_t = sequence_to_grid(seq, grid)  # (3, g_h, g_w)
    for r in range(gh):
        for c in range(gw):
            assert grid_t[0, r, c] == r and grid_t[1, r, c] == c
    assert torch.equal(grid_to_sequence(grid_t), seq)
    batched = sequence_to_grid(seq[None].repeat(2, 1, 1), grid)
    assert batched.shape == (2, 3, gh, gw) and torch.equal(grid_to_sequence(batched)[1], seq)


def test_region_vit_tokens_follow_the_grid_order() -> None:
    """Token 1 + k inside the region ViT is tile (r, c) with k = r * g_w + c."""
    from dino_lib.models.region_vit import build_region_vit

    model = build_region_vit(input_dim=3, embed_dim=8, depth=1, num_heads=2, pos_grid=2)
    model.phi[0].weight.data = torch.eye(8, 3)
    model.phi[0].bias.data.zero_()
    model.pos_embed.data.zero_()
    seq = torch.stack([torch.tensor([float(r), float(c), 0.5]) for r in range(2) for c in range(3)])  # (6, 3)
    tokens = model.prepare_tokens(sequence_to_grid(seq, (2, 3))[None])  # (1, 7, 8)
    torch.testing.assert_close(tokens[0, 1:, :3], torch.nn.functional.gelu(seq))


def test_fit_region_modes() -> None:
    image = torch.rand(3, 70, 100)
    with pytest.raises(ValueError, match="not a multiple of the tile size 32"):
        fit_region(image, 32, "error", name="r.png")
    cropped = fit_region(image, 32, "crop")
    assert cropped.shape == (3, 64, 96) and torch.equal(cropped, image[:, 3:67, 2:98])
    padded = fit_region(image, 32, "pad")
    assert padded.shape == (3, 96, 128) and torch.equal(padded[:, :70, :100], image)
    assert torch.all(padded[:, 70:] == 1.0) and torch.all(padded[:, :, 100:] == 1.0)


def test_parse_tile_name() -> None:
    assert parse_tile_name("ihc-a_x256_y512") == ("ihc-a", 256, 512)
    assert parse_tile_name("TCGA-01_1024_2048") == ("TCGA-01", 1024, 2048)
    assert parse_tile_name("4096_0") == (None, 4096, 0)
    with pytest.raises(ValueError, match="no grid coordinates"):
        parse_tile_name("thumbnail")
