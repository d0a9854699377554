"""Attention mass on the bright strokes of a real handwritten digit: bounds, a map placed on the strokes, and the
uniform reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dino_lib.attention import (
    bright_foreground,
    compute_image_maps,
    mass_on_foreground,
    mean_mass_on_bright_foreground,
)
from dino_lib.attention import foreground_share_by_block as share_by_block
from dino_lib.data.samples import resolve_data_path
from dino_lib.models import build_backbone


@pytest.fixture(scope="module")
def digit_maps():
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", patch_size=8, depth=2).eval()
    image = sorted(resolve_data_path("sample:digits/val").rglob("*.png"))[0]
    return compute_image_maps(model, [image], patch_size=8, image_size=64)[0]


def test_bright_foreground_is_the_strokes(digit_maps):
    mask = bright_foreground(digit_maps.picture)
    assert mask.shape == digit_maps.picture.shape[:2]
    assert 0.05 < mask.mean() < 0.6  # a digit covers part of its square, not none or all of it
    with pytest.raises(ValueError, match="uniform"):
        bright_foreground(np.zeros((8, 8, 3), dtype=np.uint8))


def test_mass_on_foreground_bounds_and_placed_map(digit_maps):
    heads = digit_maps.maps.shape[1]
    mask = bright_foreground(digit_maps.picture)
    everywhere = mass_on_foreground(digit_maps, np.ones_like(mask))
    np.testing.assert_allclose(everywhere, np.ones(heads), rtol=1e-5)
    np.testing.assert_allclose(mass_on_foreground(digit_maps, np.zeros_like(mask)), np.zeros(heads), atol=1e-7)
    # all the mass on the patch with the most stroke pixels: a share far above the strokes' share of the picture
    h, w = digit_maps.maps.shape[-2:]
    per_patch = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(mask.astype(np.float32))[None], (h, w))[0]
    placed = torch.zeros_like(digit_maps.maps)
    placed[..., per_patch.argmax() // w, per_patch.argmax() % w] = 1.0
    on_strokes = mass_on_foreground(dataclasses.replace(digit_maps, maps=placed), mask)
    assert (on_strokes > 2 * mask.mean()).all()
    with pytest.raises(ValueError, match="does not match"):
        mass_on_foreground(digit_maps, mask[:-1])


def test_mean_over_images_reports_the_uniform_reference(digit_maps):
    summary = mean_mass_on_bright_foreground([digit_maps, digit_maps])
    assert summary["uniform"] == pytest.approx(bright_foreground(digit_maps.picture).mean())
    assert 0.0 <= summary["attention_on_foreground"] <= 1.0


def test_share_by_block_scores_every_block_against_the_baseline():
    image = sorted(resolve_data_path("sample:digits/val").rglob("*.png"))[0]
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", patch_size=8, depth=3).eval()
    results = compute_image_maps(model, [image], patch_size=8, image_size=64, layers=(0, 1, 2))
    # The baseline: block maps with all the mass on the patch holding the most stroke pixels.
    mask = bright_foreground(results[0].picture)
    h, w = results[0].maps.shape[-2:]
    per_patch = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(mask.astype(np.float32))[None], (h, w))[0]
    placed = torch.zeros_like(results[0].maps)
    placed[..., per_patch.argmax() // w, per_patch.argmax() % w] = 1.0
    baseline = [dataclasses.replace(results[0], maps=placed)]
    rows = share_by_block(results, baseline)
    assert [r["block"] for r in rows] == [0, 1, 2]
    for pos, row in enumerate(rows):
        assert row["model"] == pytest.approx(
            mean_mass_on_bright_foreground(results, layer_pos=pos)["attention_on_foreground"]
        )
        assert row["baseline"] > 2 * row["uniform"]
        assert row["uniform"] == pytest.approx(mask.mean())
    with pytest.raises(ValueError, match="same images and blocks"):
        share_by_block(results, [dataclasses.replace(results[0], layers=[0])])
