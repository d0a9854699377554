"""Rendering of attention maps: determinism, shapes, reference file names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from skimage import data

from dino_lib.viz.attention import (
    HEAD_PALETTE,
    compare_figure,
    figure_png,
    head_grid_figure,
    mask_figure,
    mask_overlay,
    normalize_maps,
    overlay,
    save_reference_pngs,
)


@pytest.fixture()
def picture() -> np.ndarray:
    return data.chelsea()[::4, ::4].copy()  # (75, 113, 3), non-square


@pytest.fixture()
def maps(picture) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(3, *picture.shape[:2])


def test_normalization_modes(maps):
    per_map = normalize_maps(maps, "per_map")
    assert np.allclose(per_map.min(axis=(1, 2)), 0) and np.allclose(per_map.max(axis=(1, 2)), 1)
    shared = normalize_maps(maps * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1), "shared")
    assert shared.max() == pytest.approx(1.0) and shared[0].max() < 0.5
    fixed = normalize_maps(maps, "fixed", vrange=(0.0, 2.0))
    assert fixed.max() <= 0.5
    with pytest.raises(ValueError, match="vrange"):
        normalize_maps(maps, "fixed")


def test_overlay_and_mask_overlay(picture, maps):
    m01 = normalize_maps(maps[0])
    assert np.array_equal(overlay(picture, m01, alpha=0.0), picture)
    out = overlay(picture, m01, alpha=1.0)
    assert out.shape == picture.shape and out.dtype == np.uint8 and not np.array_equal(out, picture)
    mask = np.zeros(picture.shape[:2], bool)
    mask[10:30, 20:50] = True
    tinted = mask_overlay(picture, mask, color=HEAD_PALETTE[1], alpha=0.5)
    assert np.array_equal(tinted[~mask], picture[~mask])  # outside untouched
    edge_colour = (np.asarray(HEAD_PALETTE[1]) * 255).round()
    assert np.allclose(tinted[10, 30], edge_colour, atol=1)  # contour drawn in the head colour
    with pytest.raises(ValueError, match="differ in size"):
        overlay(picture, m01[:10])


def test_figures_are_deterministic_and_keep_aspect(picture, maps):
    fig1 = head_grid_figure(picture, maps, alpha=0.5)
    fig2 = head_grid_figure(picture, maps, alpha=0.5)
    assert isinstance(fig1, Figure)
    assert figure_png(fig1) == figure_png(fig2)  # byte-identical
    masks = maps > 0.7
    a, b = (
        figure_png(mask_figure(picture, masks, threshold=0.6)),
        figure_png(mask_figure(picture, masks, threshold=0.6)),
    )
    assert a == b
    ax = fig1.axes[0]
    assert ax.get_aspect() == 1.0  # imshow keeps the true aspect ratio (reference defect 4)


def test_compare_figure(picture, maps):
    fig = compare_figure(picture, maps, maps * 2, labels=("teacher", "student"))
    assert len([ax for ax in fig.axes if ax.images]) == 2 * (1 + 3)
    with pytest.raises(ValueError, match="differ in shape"):
        compare_figure(picture, maps, maps[:2])


def test_reference_file_names(tmp_path, picture, maps):
    written = save_reference_pngs(tmp_path, picture, maps, maps > 0.5, threshold=0.6)
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["img.png"] + [f"attn-head{j}.png" for j in range(3)] + [f"mask_th0.6_head{j}.png" for j in range(3)]
    )
    first = (tmp_path / "mask_th0.6_head0.png").read_bytes()
    save_reference_pngs(tmp_path, picture, maps, maps > 0.5, threshold=0.6)
    assert (tmp_path / "mask_th0.6_head0.png").read_bytes() == first  # deterministic colours
