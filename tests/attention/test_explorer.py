"""MapExplorer: the arrays behind the attention explorer, one cached forward pass per image and block."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from skimage import data

from dino_lib.attention import compute_image_maps, mass_threshold, to_image_size
from dino_lib.attention.explorer import MapExplorer
from dino_lib.models import DinoVisionTransformer


def _model(depth: int = 2) -> DinoVisionTransformer:
    torch.manual_seed(0)
    return DinoVisionTransformer(patch_size=16, embed_dim=32, depth=depth, num_heads=2).eval()


def _folder(tmp_path):
    for name, img in (("cat", data.chelsea()), ("coffee", data.coffee())):
        Image.fromarray(img[::3, ::3]).save(tmp_path / f"{name}.jpg")
    return tmp_path


def test_names_sizes_and_cache(tmp_path):
    explorer = MapExplorer(_model(), _folder(tmp_path), patch_size=16, image_size=64)
    assert explorer.names == ["cat.jpg", "coffee.jpg"] and (explorer.depth, explorer.num_heads) == (2, 2)
    smooth = explorer.head_map("cat.jpg", 1)
    assert smooth.shape == explorer.picture("cat.jpg", 1).shape[:2] and smooth.dtype == np.float32
    explorer.head_map("cat.jpg", 1, head=0)
    explorer.mask("cat.jpg", 1, 1, 0.6)
    assert explorer.forward_passes == 1  # heads and thresholds re-read the cached maps
    explorer.head_map("cat.jpg", 0)
    explorer.head_map("coffee.jpg", 1)
    assert explorer.forward_passes == 3


def test_maps_equal_the_pipeline_and_masks_the_threshold(tmp_path):
    model = _model()
    explorer = MapExplorer(model, _folder(tmp_path), patch_size=16, image_size=64)
    (res,) = compute_image_maps(model, [tmp_path / "cat.jpg"], patch_size=16, image_size=64, layers=(1,))
    torch.testing.assert_close(explorer.grid_map("cat.jpg", 1, head=1), res.maps[0, 1])
    torch.testing.assert_close(explorer.grid_map("cat.jpg", 1), res.maps[0].mean(dim=0))
    expected = to_image_size(mass_threshold(res.maps[0, 1], 0.6), res.geometry).numpy()
    mask = explorer.mask("cat.jpg", 1, 1, 0.6)
    assert mask.dtype == bool and np.array_equal(mask, expected)


def test_added_image_is_listed_last(tmp_path):
    explorer = MapExplorer(_model(1), [_folder(tmp_path) / "cat.jpg"], patch_size=16, image_size=64)
    explorer.add_image("upload:astro.png", data.astronaut()[::8, ::8])
    assert explorer.names == ["cat.jpg", "upload:astro.png"]
    assert explorer.picture("upload:astro.png", 0).shape[:2] == (64, 64)
