"""Batched multi-crop augmentation: each op against torchvision on single images, the parameters against the
reference's draws, and the crops against the PIL pipeline on real images."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dino_lib.data import batch_ops
from dino_lib.data.augment import DataAugmentationDINO
from dino_lib.data.batch_augment import BatchedMultiCrop, color_jitter, crop_resize
from dino_lib.data.crop_params import MultiCropParams, base_image, crop_specs, sample_box
from dino_lib.data.image_folder import ImageDataset, SeededCrops, find_images
from dino_lib.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from dino_lib.data.samples import resolve_data_path

SMALL = dict(
    global_crops_scale=(0.5, 1.0),
    local_crops_scale=(0.2, 0.5),
    local_crops_number=4,
    global_crops_size=32,
    local_crops_size=16,
)  # params/pretrain/small_data.yaml
MEAN, STD = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Six real colour photos (sample:images), 24 x 24, float in [0, 1]."""
    files, _, _ = find_images(resolve_data_path("sample:images"))
    images = [base_image(Image.open(f).convert("RGB"), 24) for f in files[::9][:6]]
    return torch.stack(images).float() / 255


def _params(n: int, crops: int = 1, **over: torch.Tensor) -> dict[str, torch.Tensor]:
    """Collated parameters that change nothing: whole-image box, no flip, jitter, grayscale, blur or solarisation."""
    p = {
        "box": torch.tensor([0.0, 0.0, 32.0, 32.0]).repeat(n, crops, 1),
        "flip": torch.zeros(n, crops, dtype=torch.bool),
        "jitter": torch.zeros(n, crops, dtype=torch.bool),
        "order": torch.arange(4).repeat(n, crops, 1),
        "factors": torch.tensor([1.0, 1.0, 1.0, 0.0]).repeat(n, crops, 1),
        "gray": torch.zeros(n, crops, dtype=torch.bool),
        "blur": torch.zeros(n, crops, dtype=torch.bool),
        "sigma": torch.ones(n, crops),
        "solarize": torch.zeros(n, crops, dtype=torch.bool),
    }
    return {**p, **over}


def _one_crop(size: int = 32) -> BatchedMultiCrop:
    return BatchedMultiCrop(crop_specs((0.5, 1.0), (0.2, 0.5), 0, size, 16)[:1], IMAGENET_MEAN, IMAGENET_STD)


def _bases(n: int = 3, side: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def test_identity_box_and_no_ops_return_the_image():
    bases = _bases()
    (out,) = _one_crop()([bases, _params(3)], "cpu")
    assert out.dtype == torch.float32 and out.shape == (3, 3, 32, 32)
    torch.testing.assert_close(_unnormalise(out), bases.float() / 255, rtol=0, atol=1e-6)
    (half,) = _one_crop(16)([bases, _params(3)], "cpu")  # shrinking averages 2 x 2 pixels (antialiasing)
    expected = torch.nn.functional.avg_pool2d(bases.float() / 255, 2)
    torch.testing.assert_close(_unnormalise(half), expected, rtol=0, atol=1e-6)


def test_box_crops_the_right_region_and_flip_mirrors_it():
    bases = _bases()
    box = torch.tensor([[4.0, 8.0, 16.0, 16.0]]).repeat(3, 1, 1)  # top 4, left 8, 16 x 16 -> 16 px: exact pixels
    flip = torch.tensor([[True], [False], [True]])
    x = crop_resize(bases.float(), torch.tensor([[0, 4.0, 8.0, 16.0, 16.0]]), 16)
    torch.testing.assert_close(x[0], bases[0, :, 4:20, 8:24].float(), rtol=0, atol=1e-4)
    aug = BatchedMultiCrop(crop_specs((0.5, 1.0), (0.2, 0.5), 0, 16, 16)[:1], IMAGENET_MEAN, IMAGENET_STD)
    (out,) = aug([bases, _params(3, box=box, flip=flip)], "cpu")
    crops = bases[:, :, 4:20, 8:24].float() / 255
    expected = torch.where(flip.view(3, 1, 1, 1), crops.flip(-1), crops)
    torch.testing.assert_close(_unnormalise(out), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("op", "reference", "factors"),
    [
        (batch_ops.adjust_brightness, TF.adjust_brightness, (0.6, 0.9, 1.4)),
        (batch_ops.adjust_contrast, TF.adjust_contrast, (0.6, 1.1, 1.4)),
        (batch_ops.adjust_saturation, TF.adjust_saturation, (0.8, 1.0, 1.2)),
        (batch_ops.adjust_hue, TF.adjust_hue, (-0.1, 0.03, 0.1)),
    ],
    ids=["brightness", "contrast", "saturation", "hue"],
)
def test_colour_ops_match_torchvision_per_image(photos, op, reference, factors):
    f = torch.tensor(factors * 2)
    out = op(photos, f)
    for i in range(len(photos)):
        torch.testing.assert_close(out[i], reference(photos[i], float(f[i])), rtol=0, atol=1e-5)
    assert not torch.allclose(out[0], photos[0], atol=1e-3)  # the factors did change the images


def test_jitter_order_is_per_image(photos):
    """Each image goes through its own op order, as torchvision's ColorJitter with those parameters."""
    n = len(photos)
    order = torch.stack([torch.randperm(4, generator=torch.Generator().manual_seed(i)) for i in range(n)])
    factors = torch.tensor([[1.3, 0.7, 1.15, 0.08], [0.65, 1.35, 0.85, -0.09]]).repeat(n // 2, 1)
    jitter = torch.tensor([True, True, False, True, True, True])
    out = color_jitter(photos.clone(), jitter, order, factors)
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(n):
        expected = photos[i]
        for op in order[i].tolist() if jitter[i] else []:
            expected = fns[op](expected, float(factors[i, op]))
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)
    assert len({tuple(o) for o in order.tolist()}) > 1


def test_grayscale_and_solarize_match_torchvision(photos):
    torch.testing.assert_close(
        batch_ops.grayscale(photos).expand(-1, 3, -1, -1), TF.rgb_to_grayscale(photos, 3), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(batch_ops.solarize(photos), TF.solarize(photos, 128 / 255), rtol=0, atol=0)
    bases = _bases()  # through the pipeline: only the selected images change
    gray, sol = torch.tensor([[True], [False], [False]]), torch.tensor([[False], [False], [True]])
    (out,) = _one_crop()([bases, _params(3, gray=gray, solarize=sol)], "cpu")
    x, out = bases.float() / 255, _unnormalise(out)
    torch.testing.assert_close(out[0], TF.rgb_to_grayscale(x[0], 3), rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1], x[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[2], TF.solarize(x[2], 128 / 255), rtol=0, atol=1e-5)


def test_blur_matches_torchvision_per_sigma(photos):
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.7])
    size = batch_ops.blur_kernel_size(2.0, 24)
    assert size == 13
    out = batch_ops.gaussian_blur(photos, sigma, size)
    for i in range(len(photos)):
        expected = TF.gaussian_blur(photos[i], [size, size], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)
    assert batch_ops.blur_kernel_size(2.0, 4) == 7  # reflect padding needs half the kernel < the side


def test_boxes_are_torchvisions_random_resized_crop():
    for hw, scale in (((32, 32), (0.5, 1.0)), ((40, 30), (0.05, 0.4)), ((10, 100), (0.9, 1.0))):  # last: fallback
        rrc = v2.RandomResizedCrop(8, scale=scale, ratio=(3 / 4, 4 / 3))
        for seed in range(20):
            torch.manual_seed(seed)
            expected = rrc.make_params([torch.zeros(3, *hw)])
            torch.manual_seed(seed)
            assert sample_box(*hw, scale) == tuple(expected[k] for k in ("top", "left", "height", "width"))


def test_base_image_is_a_centre_crop_of_the_shorter_side():
    img = Image.new("RGB", (60, 30), (0, 0, 0))
    img.paste((255, 0, 0), (15, 0, 45, 30))  # the central 30 x 30 square is red
    base = base_image(img, 30)
    assert base.dtype == torch.uint8 and base.shape == (3, 30, 30)
    assert base[0].min() == 255 and base[1:].max() == 0  # the black edges were cut off
    small = base_image(img, 16)  # resized (bicubic) first: only the outermost columns see the black edges
    assert small.shape == (3, 16, 16) and small[0, :, 1:-1].min() >= 250 and small[0].min() >= 200


def _digits(transform) -> SeededCrops:
    return SeededCrops(ImageDataset(resolve_data_path("sample:digits/train"), transform, check="off"), seed=3)


def test_params_are_per_image_and_reproducible():
    specs = crop_specs(**SMALL)
    ds = _digits(MultiCropParams(specs, 32))
    base, p = ds[5][0]
    assert base.dtype == torch.uint8 and base.shape == (3, 32, 32)
    assert p["box"].shape == (6, 4) and p["order"].shape == (6, 4) and p["solarize"].shape == (6,)
    assert not p["solarize"][[0, 2, 3, 4, 5]].any()  # solarisation is global crop 2's only
    again = ds[5][0][1]
    assert all(torch.equal(p[k], again[k]) for k in p)
    other = ds[6][0][1]
    assert not torch.equal(p["box"], other["box"])
    ds.set_epoch(1)
    assert not torch.equal(p["box"], ds[5][0][1]["box"])
    assert all(float(s) >= 0.1 and float(s) <= 2.0 for s in p["sigma"])


def test_crops_follow_the_pil_pipelines_decisions_on_digits():
    """32 px digits with a 32 px base: the same seed draws the same decisions as the PIL pipeline, so the crops
    differ only by resampling and 8-bit rounding; the crop statistics agree too."""
    specs, n = crop_specs(**SMALL), 192
    pil, batched = _digits(DataAugmentationDINO(**SMALL)), _digits(MultiCropParams(specs, 32))
    items = [batched[i][0] for i in range(0, 4 * n, 4)]
    crops = BatchedMultiCrop(specs, IMAGENET_MEAN, IMAGENET_STD)(default_collate(items), "cpu")
    reference = [torch.stack(c) for c in zip(*(pil[i][0] for i in range(0, 4 * n, 4)))]
    assert [tuple(c.shape) for c in crops] == [(n, 3, 32, 32)] * 2 + [(n, 3, 16, 16)] * 4
    for ours, ref in zip(crops, reference):
        assert ours.dtype == torch.float32
        assert (ours - ref).abs().mean() < 0.05  # same crops (values span about 4 units)
        assert (ours - ref.roll(1, 0)).abs().mean() > 0.5  # unlike other images' crops
        assert abs(float(ours.mean() - ref.mean())) < 0.03 and abs(float(ours.std() / ref.std()) - 1) < 0.03


def test_mismatched_params_are_refused():
    aug = BatchedMultiCrop(crop_specs(**SMALL), IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ValueError, match=r"params for \(3, 1\) \(images, crops\), expected \(3, 6\)"):
        aug([_bases(), _params(3)], "cpu")


def test_kernel_size_covers_three_sigma():
    assert batch_ops.blur_kernel_size(1.0, 64) == 7
    assert batch_ops.blur_kernel_size(2.0, 64) == 2 * math.ceil(6.0) + 1
