"""AttentionSnapshot: the training callback that writes the teacher's attention on one image to TensorBoard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from skimage import data

from dino_lib.attention.tracking import AttentionSnapshot
from dino_lib.models import DinoVisionTransformer


class _Writer:
    def __init__(self) -> None:
        self.images: list[tuple[str, np.ndarray, int]] = []

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        self.images.append((tag, picture, step))


class _Wrapper(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


@pytest.fixture()
def image(tmp_path):
    (tmp_path / "b").mkdir()
    Image.fromarray(data.chelsea()[::4, ::4]).save(tmp_path / "b" / "cat.png")
    Image.fromarray(data.coffee()[::4, ::4]).save(tmp_path / "a.png")
    return tmp_path


def _vit() -> DinoVisionTransformer:
    torch.manual_seed(0)
    return DinoVisionTransformer(patch_size=16, embed_dim=32, depth=2, num_heads=2).eval()


def test_strip_is_the_picture_and_one_overlay_per_head(image):
    snapshot = AttentionSnapshot.first_image_of(image, 32)
    assert snapshot.image.name == "a.png"  # sorted, recursively
    strip = snapshot.strip(_vit())
    # coffee()[::4, ::4] is 100x150: shorter side 32 -> 32x48; the picture and 2 heads side by side
    assert strip.dtype == np.uint8 and strip.shape == (32, 3 * 48, 3)
    assert np.array_equal(strip[:, :48], np.asarray(Image.open(snapshot.image).resize((48, 32), Image.BILINEAR)))


def test_on_epoch_end_writes_every_nth_epoch(image):
    writer = _Writer()
    snapshot = AttentionSnapshot.first_image_of(image, 32, every=2)
    model = _Wrapper(_vit())
    for epoch in range(4):
        snapshot.write(epoch, model, writer)
    assert [(tag, step) for tag, _, step in writer.images] == [("attention/teacher", 1), ("attention/teacher", 3)]
    snapshot.write(1, model, None)  # no writer: nothing to do


def test_backbones_without_attention_are_skipped(image):
    writer = _Writer()
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3))
    AttentionSnapshot.first_image_of(image, 32).write(0, cnn, writer)
    assert writer.images == []
    with pytest.raises(ValueError, match="every"):
        AttentionSnapshot(image / "a.png", 32, every=0)
