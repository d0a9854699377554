"""PCA colouring of patch features: foreground from the first component, shared colours for shared parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from dino_lib.attention.patch_pca import grid_to_picture, image_patch_pca, patch_features, patch_pca
from dino_lib.models import build_backbone


def _synthetic(seed: int) -> tuple[list[torch.Tensor], list[np.ndarray], list[np.ndarray]]:
    """Two 8 x 8 grids: background patches near one vector, a central 4 x 4 object of four parts (its quadrants)
    near four other vectors (so the foreground has three directions of variance); features, masks, part labels."""
    gen = torch.Generator().manual_seed(seed)
    dim = 16
    background, *part_vectors = (torch.randn(dim, generator=gen) * 3 for _ in range(5))
    feats, masks, parts = [], [], []
    for offset in (1, 2):
        grid = background.expand(8, 8, dim).clone()
        part = np.zeros((8, 8), int)
        part[offset : offset + 2, 2:4], part[offset : offset + 2, 4:6] = 1, 2
        part[offset + 2 : offset + 4, 2:4], part[offset + 2 : offset + 4, 4:6] = 3, 4
        for label, vector in enumerate(part_vectors, start=1):
            grid[torch.from_numpy(part == label)] = vector
        feats.append(grid + 0.05 * torch.randn(8, 8, dim, generator=gen))
        masks.append(part > 0)
        parts.append(part)
    return feats, masks, parts


def test_foreground_and_part_colours_are_recovered():
    feats, masks, parts = _synthetic(0)
    pca = patch_pca(feats, threshold=0.5)
    for rgb, fg, first, obj in zip(pca.rgb, pca.foreground, pca.first, masks):
        assert rgb.shape == (8, 8, 3) and fg.shape == (8, 8) and first.shape == (8, 8)
        np.testing.assert_array_equal(fg, obj)  # the object, not the border, is the foreground
        assert rgb.min() >= 0 and rgb.max() <= 1 and np.all(rgb[~fg] == 0)
        assert first[~obj].max() < first[obj].min()
    # each part has one colour in both images, and different parts have different colours
    colours = [np.concatenate([rgb[p == label] for rgb, p in zip(pca.rgb, parts)]) for label in (1, 2, 3, 4)]
    assert max(c.std(0).max() for c in colours) < 0.05
    means = np.stack([c.mean(0) for c in colours])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(4, 1)]
    assert distances.min() > 0.3
    assert 0.9 < pca.explained.sum() <= 1.0 + 1e-6


def test_no_threshold_colours_every_patch_and_result_does_not_depend_on_sign():
    feats, _, _ = _synthetic(1)
    whole = patch_pca(feats, threshold=None)
    assert all(fg.all() for fg in whole.foreground)
    flipped = patch_pca([-f for f in feats], threshold=0.5)
    reference = patch_pca(feats, threshold=0.5)
    for a, b in zip(flipped.foreground, reference.foreground):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one image"):
        patch_pca([])
    with pytest.raises(ValueError, match="at least 3 patches"):
        patch_pca([torch.randn(1, 2, 8)])


def test_patch_features_skip_cls_and_registers():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 56, 56)
    timm_vit = build_backbone("timm:vit_small_patch14_reg4_dinov2", depth=2, embed_dim=32, num_heads=2, img_size=56)
    feats = patch_features(timm_vit.eval(), x)
    assert feats.shape == (2, 4, 4, 32)
    tokens = timm_vit.forward_features(x)  # (B, 1 + 4 registers + 16, D)
    torch.testing.assert_close(feats.reshape(2, 16, 32), tokens[:, 5:])
    dino = build_backbone("vit_tiny", depth=2, embed_dim=32, num_heads=2).eval()
    x = torch.randn(1, 3, 48, 32)  # a 3 x 2 grid
    feats = patch_features(dino, x)
    assert feats.shape == (1, 3, 2, 32)
    torch.testing.assert_close(feats.reshape(1, 6, 32), dino.forward_features(x)[:, 1:])


def test_image_patch_pca_on_real_images():
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=2).eval()
    images = [data.chelsea()[::4, ::4], data.coffee()[::4, ::4]]
    pca, pictures, geometries = image_patch_pca(model, images, patch_size=16, image_size=64)
    for rgb, picture, geometry in zip(pca.rgb, pictures, geometries):
        assert rgb.shape == (*geometry.grid_hw, 3)
        assert grid_to_picture(rgb, geometry).shape == picture.shape
        assert np.isfinite(rgb).all()
