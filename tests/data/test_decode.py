"""Reading images as 8-bit RGB: 16-bit and float modes scaled by their range, truncated files named, size limit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from dino_lib.data.decode import ImageReadError, check_images, load_rgb, probe_image
from dino_lib.data.image_folder import CorruptImagesError, ImageDataset


def _grey16(tmp_path, suffix):
    values = (data.camera().astype(np.uint32) * 257).astype(np.uint16)  # the 8-bit photo spread over 0..65535
    path = tmp_path / f"grey16{suffix}"
    Image.fromarray(values).save(path)
    return path, data.camera()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_are_scaled_not_clipped(tmp_path, suffix):
    path, photo = _grey16(tmp_path, suffix)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # Pillow keeps the 16 bits
        clipped = np.asarray(img.convert("RGB"))[..., 0]
    assert (clipped == 255).mean() > 0.5  # what plain convert("RGB") does to it
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (*photo.shape, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[..., 0].astype(int) - photo).max() <= 1


def test_float_images_in_unit_range_are_scaled(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(data.camera().astype(np.float32) / 255.0).save(path)
    assert np.abs(np.asarray(load_rgb(path))[..., 1].astype(int) - data.camera()).max() <= 1


def test_truncated_file_is_an_error_naming_it(tmp_path, truncated_jpeg):
    path = truncated_jpeg(tmp_path / "cut.jpg")
    assert probe_image(path, decode=False) is None  # the header is fine: only a decode finds it
    with pytest.raises(ImageReadError, match=r"cut\.jpg: cannot read the image .*truncated"):
        load_rgb(path)


def test_too_large_images_say_the_limit_and_how_to_raise_it(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(data.camera()).save(path)
    monkeypatch.setenv("DINO_LIB_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageReadError, match=r"big\.png: image is too large .*limit 1000.*DINO_LIB_MAX_IMAGE_PIXELS"):
        load_rgb(path)
    monkeypatch.setenv("DINO_LIB_MAX_IMAGE_PIXELS", "0")
    assert load_rgb(path).size == (512, 512)


def test_check_images_decodes_within_the_limit_then_reads_headers(tmp_path, truncated_jpeg):
    good = tmp_path / "a.png"
    Image.fromarray(data.camera()[:32, :32]).save(good)
    cut = truncated_jpeg(tmp_path / "b.jpg")
    bad, reasons = check_images([good, cut])
    assert bad == [cut] and "b.jpg" in reasons[0]
    assert check_images([good, cut], decode_limit=1) == ([], [])  # past the limit: header only
    assert check_images([cut], total_budget_s=-1.0) == ([], [])  # past the total budget: decoded when used


def test_dataset_reports_or_skips_a_truncated_image_found_at_use(tmp_path, truncated_jpeg, caplog):
    for i in range(3):
        Image.fromarray(data.astronaut()[i * 20 : i * 20 + 32, :32]).save(tmp_path / f"{i}.png")
    truncated_jpeg(tmp_path / "3.jpg")
    with pytest.raises(CorruptImagesError, match=r"3\.jpg"):
        ImageDataset(tmp_path, check="decode")
    headers_only = ImageDataset(tmp_path, check="open")  # as "auto" beyond 5000 images
    with pytest.raises(ImageReadError, match=r"3\.jpg.*skip_corrupt_images"):
        headers_only[3]
    skipping = ImageDataset(tmp_path, check="open", skip_corrupt=True)
    image, _ = skipping[3]  # replaced by the next readable file (deterministic)
    assert np.array_equal(np.asarray(image), np.asarray(skipping[0][0]))
    assert "3.jpg" in caplog.text
