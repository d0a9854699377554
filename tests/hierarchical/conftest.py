"""Small real inputs for the hierarchical tests: region images on disk and tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dino_lib.models import DinoVisionTransformer
from dino_lib.models.region_vit import build_region_vit


@pytest.fixture()
def region_folder(tmp_path: Path, sample_paths) -> Path:
    """Four 256 x 256 regions (64-px tiles, g = 4) cut from the sample histology regions, two slides."""
    folder = tmp_path / "regions"
    folder.mkdir()
    for src in sorted(Path(sample_paths.histology_regions).glob("*.png"))[:2]:
        slide = src.stem.split("_x")[0]
        img = np.asarray(Image.open(src).convert("RGB"))
        for x, y in ((0, 0), (256, 0)):
            Image.fromarray(img[y : y + 256, x : x + 256]).save(folder / f"{slide}_x{x}_y{y}.png")
    return folder


@pytest.fixture()
def tiny_vit() -> DinoVisionTransformer:
    torch.manual_seed(0)
    return DinoVisionTransformer(patch_size=16, embed_dim=32, depth=2, num_heads=2).eval()


@pytest.fixture()
def tiny_region_vit():
    torch.manual_seed(0)
    return build_region_vit(input_dim=32, embed_dim=32, depth=2, num_heads=2, pos_grid=3).eval()
