"""AttentionExplorer: headless, cached forward passes (through its MapExplorer), picture updates in place."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from skimage import data

from dino_lib.attention.explorer import MapExplorer
from dino_lib.models import DinoVisionTransformer
from dino_lib.viz.widgets import AttentionExplorer


def _images(tmp_path):
    paths = []
    for name, img in (("cat", data.chelsea()), ("coffee", data.coffee())):
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(img[::3, ::3]).save(path)
        paths.append(path)
    return paths


def test_explorer_updates_and_caches(tmp_path):
    torch.manual_seed(0)
    model = DinoVisionTransformer(patch_size=16, embed_dim=32, depth=2, num_heads=2)
    _images(tmp_path)
    explorer = AttentionExplorer(MapExplorer(model, tmp_path, patch_size=16, image_size=64))
    assert explorer.image_select.options == ("cat.jpg", "coffee.jpg")
    first = bytes(explorer.picture.value)
    assert first.startswith(b"\x89PNG") and explorer.forward_passes == 1

    explorer.head.value = 1
    assert bytes(explorer.picture.value) != first
    explorer.threshold.value = 0.3
    explorer.opacity.value = 0.2
    assert explorer.forward_passes == 1  # head/threshold/opacity re-render from the cache

    explorer.block.value = 0
    assert explorer.forward_passes == 2
    explorer.block.value = 1
    assert explorer.forward_passes == 2  # cached
    explorer.image_select.value = "coffee.jpg"
    assert explorer.forward_passes == 3
    assert "coffee.jpg" in explorer.status.value


def test_threshold_zero_means_no_mask(tmp_path):
    model = DinoVisionTransformer(patch_size=16, embed_dim=32, depth=1, num_heads=2)
    explorer = AttentionExplorer(MapExplorer(model, _images(tmp_path), patch_size=16, image_size=64), threshold=None)
    plain = explorer.render()
    explorer.threshold.value = 0.5
    assert not np.array_equal(explorer.render(), plain)


def test_upload_adds_and_selects_image(tmp_path):
    model = DinoVisionTransformer(patch_size=16, embed_dim=32, depth=1, num_heads=2)
    explorer = AttentionExplorer(MapExplorer(model, _images(tmp_path), patch_size=16, image_size=64))
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()[::8, ::8]).save(buf, format="png")
    explorer._on_upload({"new": ({"name": "astro.png", "content": memoryview(buf.getvalue())},)})
    assert explorer.image_select.value == "upload:astro.png"
    assert explorer.render().shape[:2] == (64, 64)
