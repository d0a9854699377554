"""Pre-processing presets and their geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from dino_lib.attention import attention_maps, preprocess, to_image_size
from dino_lib.models import DinoVisionTransformer


def test_reference_preset_exact_resize_and_top_left_crop():
    img = data.astronaut()  # (512, 512, 3)
    x, picture, geo = preprocess(img, patch_size=16, image_size=(100, 150), mode="reference")
    assert geo.resized_hw == (100, 150) and geo.input_hw == (96, 144) and geo.cropped_hw == (4, 6)
    assert x.shape == (3, 96, 144) and picture.shape == (96, 144, 3)
    # ImageNet normalisation of the resized picture (top-left part kept)
    expected = (picture[0, 0] / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[:, 0, 0].numpy(), expected, atol=1e-5)


def test_pad_preset_keeps_aspect_and_records_padding():
    img = data.chelsea()  # (300, 451, 3)
    x, picture, geo = preprocess(img, patch_size=8, image_size=100, mode="pad")
    assert geo.original_hw == (300, 451) and geo.resized_hw == (100, 150)
    assert geo.input_hw == (104, 152) and geo.pad_hw == (4, 2) and geo.grid_hw == (13, 19)
    assert picture.shape == (100, 150, 3) and geo.display_hw == (100, 150)
    assert torch.all(x[:, 100:, :] == 0) and torch.all(x[:, :, 150:] == 0)


def test_any_size_non_square_end_to_end():
    torch.manual_seed(0)
    model = DinoVisionTransformer(patch_size=8, embed_dim=32, depth=2, num_heads=2).eval()
    for shape in [(37, 90, 3), (120, 41, 3)]:
        img = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
        for mode in ("pad", "reference"):
            x, picture, geo = preprocess(img, patch_size=8, mode=mode)
            maps = attention_maps(model, x[None]).maps[0, 0]
            assert maps.shape == (2, *geo.grid_hw)
            assert to_image_size(maps, geo).shape[-2:] == picture.shape[:2]


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        preprocess(tmp_path / "missing.jpg", patch_size=16)
    with pytest.raises(ValueError, match="aspect"):
        preprocess(data.astronaut(), patch_size=16, image_size=(100, 120), mode="pad")
    with pytest.raises(ValueError, match="smaller than one"):
        preprocess(np.zeros((10, 40, 3), np.uint8), patch_size=16, mode="reference")
