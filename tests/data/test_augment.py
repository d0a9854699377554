"""Multi-crop augmentation and the pretraining image folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from dino_lib.data.augment import DataAugmentationDINO, PILGaussianBlur, PILSolarize
from dino_lib.data.image_folder import CorruptImagesError, ImageDataset, SeededCrops, find_images


def _image(seed=0, size=(120, 100)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _steps(compose):
    return list(compose.transforms)


def test_crop_list_sizes_and_normalisation():
    aug = DataAugmentationDINO(local_crops_number=3, global_crops_size=48, local_crops_size=24)
    crops = aug(_image())
    assert [tuple(c.shape) for c in crops] == [(3, 48, 48)] * 2 + [(3, 24, 24)] * 3
    assert all(c.dtype == torch.float32 for c in crops)
    flat = DataAugmentationDINO(local_crops_number=0, global_crops_size=32)(_image())
    assert len(flat) == 2
    # a uniform grey 0.5 image normalises to (0.5 - mean) / std wherever no colour op changed it
    gray = Image.new("RGB", (64, 64), (128, 128, 128))
    torch.manual_seed(0)
    c = DataAugmentationDINO(local_crops_number=0, global_crops_size=16)(gray)[0]
    assert c.shape == (3, 16, 16)


def test_pipeline_matches_reference_table():
    aug = DataAugmentationDINO(global_crops_scale=(0.3, 0.9), local_crops_scale=(0.05, 0.3))
    for compose, size, scale, blur_p, solarize in (
        (aug.global_transfo1, 224, (0.3, 0.9), 1.0, None),
        (aug.global_transfo2, 224, (0.3, 0.9), 0.1, 0.2),
        (aug.local_transfo, 96, (0.05, 0.3), 0.5, None),
    ):
        steps = _steps(compose)
        crop = steps[0]
        assert isinstance(crop, v2.RandomResizedCrop) and crop.size == (size, size) and crop.scale == scale
        assert crop.interpolation == InterpolationMode.BICUBIC
        assert crop.ratio == pytest.approx((3 / 4, 4 / 3))
        assert isinstance(steps[1], v2.RandomHorizontalFlip) and steps[1].p == 0.5
        assert isinstance(steps[2], v2.RandomApply) and steps[2].p == 0.8
        jitter = steps[2].transforms[0]
        assert (jitter.brightness, jitter.contrast, jitter.saturation) == ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2))
        assert jitter.hue == (-0.1, 0.1)
        assert isinstance(steps[3], v2.RandomGrayscale) and steps[3].p == 0.2
        assert isinstance(steps[4], PILGaussianBlur) and steps[4].p == blur_p
        sol = [s for s in steps if isinstance(s, PILSolarize)]
        assert (sol[0].p if sol else None) == solarize
        norm = steps[-1]
        assert isinstance(norm, v2.Normalize) and norm.mean == [0.485, 0.456, 0.406]


def test_blur_and_solarize_decisions(monkeypatch):
    img = _image()
    # u <= p applies the blur; u > p leaves the image unchanged
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([0.5, 0.0]))
    assert PILGaussianBlur(0.5)(img) is not img
    assert PILGaussianBlur(0.49)(img) is img
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([0.2]))
    assert PILSolarize(0.2)(img) is img  # u < p is required
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([0.1]))
    out = np.asarray(PILSolarize(0.2)(img))
    src = np.asarray(img)
    assert np.array_equal(out, np.where(src >= 128, 255 - src, src))


def test_seeded_crops_are_reproducible(tmp_path):
    for i in range(3):
        _image(i).save(tmp_path / f"{i}.png")
    ds = SeededCrops(
        ImageDataset(tmp_path, DataAugmentationDINO(local_crops_number=1, global_crops_size=32, local_crops_size=16)),
        seed=3,
    )
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, _ = ds[1]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    b, _ = ds[1]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    ds.set_epoch(1)
    c, _ = ds[1]
    assert not torch.equal(a[0], c[0])


def test_folder_layouts(tmp_path):
    for cls in ("b", "a"):
        (tmp_path / "cls" / cls / "deep").mkdir(parents=True)
        _image().save(tmp_path / "cls" / cls / "deep" / "x.jpg")
        _image().save(tmp_path / "cls" / cls / "y.jpg")
    files, labels, classes = find_images(tmp_path / "cls")
    assert classes == ["a", "b"] and labels == [0, 0, 1, 1] and len(files) == 4
    (tmp_path / "flat" / "imgs").mkdir(parents=True)
    for i in range(3):
        _image(i).save(tmp_path / "flat" / "imgs" / f"t{i}.jpg")
    files, labels, _ = find_images(tmp_path / "flat" / "imgs")
    assert [f.name for f in files] == ["t0.jpg", "t1.jpg", "t2.jpg"] and set(labels) == {0}


def test_corrupt_images_named_or_skipped(tmp_path):
    _image().save(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptImagesError) as err:
        ImageDataset(tmp_path)
    assert {p.name for p in err.value.files} == {"bad.jpg", "truncated.jpg"}
    assert "bad.jpg" in str(err.value) and "skip_corrupt_images" in str(err.value)
    ds = ImageDataset(tmp_path, skip_corrupt=True)
    assert len(ds) == 1 and ds.n_skipped == 2
    with pytest.raises(FileNotFoundError):
        ImageDataset(tmp_path / "missing")
