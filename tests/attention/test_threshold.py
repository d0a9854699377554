"""Attention-mass thresholding and up-sampling to the picture."""

from __future__ import annotations

import pytest
import torch

from dino_lib.attention import kept_mass, mass_threshold, preprocess, to_image_size, top_fraction_mask, upsample


def test_hand_computed_example_keeps_crossing_patch():
    a = torch.tensor([[0.1, 0.4], [0.2, 0.3]])
    # sorted ascending 0.1 0.2 0.3 0.4 -> cumulative 0.1 0.3 0.6 1.0; keep c > 0.4 -> 0.3 (crosses) and 0.4
    assert mass_threshold(a, 0.6).tolist() == [[False, True], [False, True]]
    # exactly reaching the fraction with the largest patch alone: 0.4 >= 0.4
    assert mass_threshold(a, 0.4).tolist() == [[False, True], [False, False]]
    assert mass_threshold(a, 1.0).all()
    assert not mass_threshold(a, 0.0).any()


def test_unnormalised_maps_are_normalised_per_map():
    a = torch.tensor([[1.0, 4.0], [2.0, 3.0]])  # sums to 10, same shape of mass as above
    b = torch.stack([a, a * 7.0])
    masks = mass_threshold(b, 0.6)
    assert masks[0].tolist() == masks[1].tolist() == [[False, True], [False, True]]


def test_ties_are_broken_deterministically():
    a = torch.full((2, 2), 0.25)
    mask = mass_threshold(a, 0.5)
    # stable ascending sort: equal values in index order, so the larger flat indices are kept
    assert mask.flatten().tolist() == [False, False, True, True]
    assert mass_threshold(a, 0.5).equal(mask)


def test_kept_mass_at_least_fraction_and_minimal():
    torch.manual_seed(0)
    maps = torch.rand(5, 3, 7, 9) ** 4
    for fraction in (0.1, 0.5, 0.6, 0.9):
        masks = mass_threshold(maps, fraction)
        kept = kept_mass(maps, masks)
        assert (kept >= fraction - 1e-6).all()
        # minimality: dropping the least attended kept patch goes below the fraction
        flat, m = maps.flatten(-2), masks.flatten(-2)
        smallest = torch.where(m, flat, torch.inf).min(-1).values
        without = (flat * m).sum(-1) - smallest
        assert (without / flat.sum(-1) < fraction + 1e-6).all()
        # the kept patches are the most attended ones
        assert (torch.where(m, flat, torch.inf).min(-1).values >= torch.where(m, -torch.inf, flat).max(-1).values).all()


def test_threshold_rejects_bad_fraction():
    with pytest.raises(ValueError, match="within"):
        mass_threshold(torch.rand(3, 3), 1.5)


def test_top_fraction_mask_counts_patches():
    a = torch.arange(10.0).reshape(2, 5)
    mask = top_fraction_mask(a, 0.3)
    assert mask.sum() == 3 and mask.flatten()[-3:].all()


def test_upsample_and_geometry_padding_cut():
    grid = torch.arange(6.0).reshape(2, 3)
    up = upsample(grid, 4)
    assert up.shape == (8, 12) and up[5, 9] == grid[1, 2]
    picture = torch.zeros(3, 30, 45, dtype=torch.uint8).permute(1, 2, 0).numpy()
    x, pic, geo = preprocess(picture, patch_size=16, mode="pad")
    assert x.shape == (3, 32, 48) and geo.grid_hw == (2, 3) and geo.pad_hw == (2, 3)
    full = to_image_size(torch.rand(4, 2, 3), geo)
    assert full.shape == (4, 30, 45) == (4, *pic.shape[:2])
    smooth = to_image_size(torch.rand(2, 3), geo, mode="bilinear")
    assert smooth.shape == (30, 45)
