"""HIPT composer and hierarchical heat maps on a small real region."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dino_lib.hierarchical.composer import HIPTComposer, load_hipt
from dino_lib.hierarchical.encoder import TileEncoder
from dino_lib.hierarchical.heatmaps import blend_levels, hipt_attention, hipt_heatmaps, percentile_rank
from dino_lib.hierarchical.sources import read_image
from dino_lib.models import IMAGENET_MEAN, IMAGENET_STD
from dino_lib.models.region_vit import build_region_vit


@pytest.fixture()
def composer(tiny_vit, tiny_region_vit) -> HIPTComposer:
    encoder = TileEncoder(tiny_vit, IMAGENET_MEAN, IMAGENET_STD, input_size=32)
    return HIPTComposer(encoder, tiny_region_vit, tile_size=64, batch_size=5)


def test_composer_outputs(composer: HIPTComposer, region_folder: Path) -> None:
    image = read_image(sorted(region_folder.glob("*.png"))[0])  # (3, 256, 256)
    out = composer(image)
    assert out.grid_hw == (4, 4) and out.tiles.shape == (16, 32) and out.region.shape == (1, 32)
    torch.testing.assert_close(out.tiles_mean, out.tiles.mean(0, keepdim=True))
    assert out.concat.shape == (1, 64)
    # batching does not change the result
    composer.batch_size = 16
    torch.testing.assert_close(composer(image).region, out.region)


def test_non_square_region_is_padded_and_padding_masked(composer: HIPTComposer) -> None:
    image = torch.rand(3, 100, 200)  # -> 128 x 256 white-padded, grid 2 x 4
    out = composer(image)
    assert out.grid_hw == (2, 4) and out.tiles.shape == (8, 32)
    assert out.tile_mask.tolist() == [[True] * 4, [True] * 4]
    out = composer(torch.rand(3, 64, 200))  # -> 64 x 256 grid 1 x 4; nothing padded vertically
    assert out.grid_hw == (1, 4) and bool(out.tile_mask.all())
    composer.pad_mode = "crop"
    assert composer(image).grid_hw == (1, 3)


def test_percentile_rank() -> None:
    x = torch.tensor([[[0.3, 0.1], [0.2, 0.9]]])
    assert percentile_rank(x, 1).tolist() == [[[0.75, 0.25], [0.5, 1.0]]]


def test_heatmaps_shapes_ranges_and_real_shifts(composer: HIPTComposer, region_folder: Path) -> None:
    image = read_image(sorted(region_folder.glob("*.png"))[0])
    maps = hipt_heatmaps(composer, image, scale=4)
    assert maps.image.shape == (64, 64, 3) and maps.image.dtype == np.uint8
    assert maps.tile_maps.shape == (2, 64, 64) and maps.region_maps.shape == (2, 64, 64)
    assert maps.tile_maps.min() > 0 and maps.tile_maps.max() <= 1
    assert maps.region_maps.min() > 0 and maps.region_maps.max() <= 1
    # pass counts: 4 region passes (0, 32, 64, 96 px) and 2 tile passes (0, 32) cover the bottom-right pixel
    assert maps.region_passes[-1, -1] == 4 and maps.region_passes[0, 0] == 1 and maps.tile_passes[-1, -1] == 2
    # per-tile ranks: each tile (16 x 16 output px, 2 x 2 tokens) spans the full rank range in the unshifted pass
    single = hipt_heatmaps(composer, image, scale=4, tile_shifts=[0], region_shifts=[0])
    tile = single.tile_maps[0, :16, :16]
    assert sorted(np.unique(tile).tolist()) == [0.25, 0.5, 0.75, 1.0]
    # shifted passes really use shifted inputs: their maps differ from the unshifted pass
    shifted = hipt_attention(composer, torch.nn.functional.pad(image[:, 32:, 32:], (0, 32, 0, 32), value=1.0))
    plain = hipt_attention(composer, image)
    assert not torch.allclose(shifted["region"], plain["region"])
    assert not np.allclose(maps.region_maps, single.region_maps)
    blended = blend_levels(maps, 0, 1)
    assert blended.shape == (64, 64) and 0 < blended.min() and blended.max() <= 1
    np.testing.assert_allclose(blend_levels(maps, 1, 0, "product"), maps.tile_maps[1] * maps.region_maps[0])
    with pytest.raises(ValueError, match="applies to the tile level only"):
        hipt_heatmaps(composer, image, region_normalization="tile")


def test_load_hipt_from_weight_files(tmp_path: Path, tiny_vit, tiny_region_vit, region_folder: Path) -> None:
    (tmp_path / "stage1").mkdir()
    torch.save(tiny_vit.state_dict(), tmp_path / "stage1" / "teacher_backbone.pth")
    (tmp_path / "stage1" / "config.yaml").write_text("arch: vit_tiny\nnum_heads: 2\n")  # heads are not in weights
    torch.save({"teacher": {f"backbone.{k}": v for k, v in tiny_region_vit.state_dict().items()}}, tmp_path / "s2.pth")
    (tmp_path / "config.yaml").write_text("region:\n  num_heads: 2\n")
    hipt = load_hipt(tmp_path / "stage1" / "teacher_backbone.pth", tmp_path / "s2.pth", tile_size=64, input_size=32,
                     normalization="imagenet")  # fmt: skip
    assert hipt.region_vit.num_heads == 2 and hipt.region_vit.pos_grid == 3
    image = read_image(sorted(region_folder.glob("*.png"))[1])
    reference = HIPTComposer(TileEncoder(tiny_vit, IMAGENET_MEAN, IMAGENET_STD, 32), tiny_region_vit, tile_size=64)
    torch.testing.assert_close(hipt(image).region, reference(image).region)


def test_load_hipt_checks_stage_compatibility(tmp_path: Path, tiny_vit) -> None:
    (tmp_path / "stage1").mkdir()
    torch.save(tiny_vit.state_dict(), tmp_path / "stage1" / "teacher_backbone.pth")
    (tmp_path / "stage1" / "config.yaml").write_text("num_heads: 2\n")
    region = build_region_vit(input_dim=48, embed_dim=32, depth=1, num_heads=4, pos_grid=2)
    torch.save(region.state_dict(), tmp_path / "region.pth")
    with pytest.raises(ValueError, match="expects 48-d tile embeddings but the stage-1 encoder gives 32-d"):
        load_hipt(tmp_path / "stage1" / "teacher_backbone.pth", tmp_path / "region.pth", normalization="imagenet")
    region = build_region_vit(input_dim=32, embed_dim=32, depth=1, num_heads=4, pos_grid=2)
    torch.save(region.state_dict(), tmp_path / "region.pth")
    hipt = load_hipt(tmp_path / "stage1" / "teacher_backbone.pth", tmp_path / "region.pth", normalization="imagenet",
                     region_kwargs={"depth": 3, "num_heads": 4, "pos_grid": 7})  # fmt: skip
    assert (len(hipt.region_vit.blocks), hipt.region_vit.num_heads, hipt.region_vit.pos_grid) == (1, 4, 2)


def test_stitch_slide_places_and_averages_regions() -> None:
    from dino_lib.hierarchical.heatmaps import stitch_slide

    a, b = np.full((2, 4, 4), 1.0), np.full((2, 4, 4), 3.0)
    canvas = stitch_slide([a, b], [(0, 0), (8, 8)], scale=4)  # b starts at (2, 2) on the canvas
    assert canvas.shape == (2, 6, 6)
    assert canvas[0, 0, 0] == 1.0 and canvas[1, 5, 5] == 3.0 and canvas[0, 3, 3] == 2.0  # overlap averaged
    assert np.isnan(canvas[0, 0, 5]) and np.isnan(canvas[0, 5, 0])  # not covered: background
    with pytest.raises(ValueError, match="not a multiple of scale=4"):
        stitch_slide([a], [(2, 0)], scale=4)
