"""Real photographs shipped inside installed packages, and the two photo-based sample sets.

Sources: scikit-image's bundled photos, scikit-learn's ``china.jpg`` / ``flower.jpg`` and
matplotlib's ``grace_hopper.jpg``. Only loaders that read files shipped in the wheels are used; the network loaders
(imageio standard images, ``scipy.datasets``, pooch-backed scikit-image data) are not.

* ``images/<photo>/<photo>_NNN.jpg``: crops of every photo at several scales for self-supervised pretraining
  (class = source photo, so the folder is also an ``ImageFolder``).
* ``labelled/{train,val}/<photo>/*.jpg``: a small classification task for k-NN and linear probes. Train crops are
  small (20-40 % of the short side) and unflipped, val crops are larger (45-70 %) and mirrored, so a probe has to
  generalise across scale and orientation rather than match near-duplicates. Every crop also gets a random colour
  change (brightness, contrast, saturation, hue, a quarter of them grey), so colour statistics alone do not solve it.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

__all__ = [
    "PHOTO_NAMES",
    "LABELLED_CLASSES",
    "load_photo",
    "build_images",
    "build_labelled",
]

logger = logging.getLogger(__name__)

_SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "stereo_motorcycle",
)
#: All source photographs, in a fixed order.
PHOTO_NAMES: tuple[str, ...] = (*_SKIMAGE_PHOTOS, "china", "flower", "grace_hopper")

#: Classes of the labelled task: everyday scenes that share colours and textures (sky, skin, wood, red objects),
#: leaving out the single-colour scientific images that would make the task trivial.
LABELLED_CLASSES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "china",
    "flower",
    "grace_hopper",
)

JPEG_QUALITY = 90
IMAGES_PER_PHOTO = 5
IMAGE_SIZES = ((256, 256), (256, 320), (320, 256))  # (H, W) choices for the pretraining images
LABELLED_SIZE = 112
LABELLED_TRAIN, LABELLED_VAL = 8, 4


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """Load one bundled photograph as an (H, W, 3) uint8 array, without touching the network.

    Raises:
        ValueError: for a name outside ``PHOTO_NAMES``.
    """
    if name in _SKIMAGE_PHOTOS:
        from skimage import data as skdata

        img = getattr(skdata, name)()
        if name == "stereo_motorcycle":
            img = img[0]  # (left view, right view, disparity): keep the left view
    elif name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    elif name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            img = np.asarray(Image.open(fh).convert("RGB"))
    else:
        raise ValueError(f"unknown sample photo {name!r}; expected one of {PHOTO_NAMES}")
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    img.setflags(write=False)  # cached and shared
    return img


def _crop_resize(
    img: np.ndarray, top: int, left: int, h: int, w: int, out_hw: tuple[int, int], flip: bool
) -> Image.Image:
    crop = Image.fromarray(img[top : top + h, left : left + w])
    crop = crop.resize((out_hw[1], out_hw[0]), Image.Resampling.BICUBIC)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else crop


def _random_box(
    rng: np.random.Generator, img_hw: tuple[int, int], out_hw: tuple[int, int], scale: tuple[float, float]
) -> tuple[int, int, int, int]:
    """A box with the aspect ratio of ``out_hw`` whose short side is ``scale`` x the photo's short side."""
    H, W = img_hw
    aspect = out_hw[1] / out_hw[0]
    short = rng.uniform(*scale) * min(H, W)
    h, w = (short, short * aspect) if aspect >= 1 else (short / aspect, short)
    h, w = int(min(round(h), H)), int(min(round(w), W))
    top = int(rng.integers(0, H - h + 1))
    left = int(rng.integers(0, W - w + 1))
    return top, left, h, w


def _colour_jitter(rng: np.random.Generator, img: Image.Image) -> Image.Image:
    """Deterministic photometric change: brightness, contrast, saturation, hue shift, sometimes grey."""
    for enhancer, (lo, hi) in (
        (ImageEnhance.Brightness, (0.7, 1.3)),
        (ImageEnhance.Contrast, (0.7, 1.3)),
        (ImageEnhance.Color, (0.5, 1.5)),
    ):
        img = enhancer(img).enhance(float(rng.uniform(lo, hi)))
    hsv = np.asarray(img.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(rng.integers(-20, 21))) % 256  # hue shift up to ~28 degrees
    img = Image.fromarray(hsv, mode="HSV").convert("RGB")
    if rng.random() < 0.25:
        img = img.convert("L").convert("RGB")
    return img


def build_images(dest: Path, seed: int = 0) -> int:
    """Write the pretraining image folder ``dest/<photo>/<photo>_NNN.jpg``; returns the number of images."""
    rng = np.random.default_rng(seed)
    n = 0
    for name in PHOTO_NAMES:
        img = load_photo(name)
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i in range(IMAGES_PER_PHOTO):
            out_hw = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
            # the first crop of each photo is the whole picture; later ones zoom in progressively
            scale = (1.0, 1.0) if i == 0 else (0.35, 0.9)
            box = _random_box(rng, img.shape[:2], out_hw, scale)
            flip = bool(rng.integers(2))
            _crop_resize(img, *box, out_hw, flip).save(dest / name / f"{name}_{i:03d}.jpg", quality=JPEG_QUALITY)
            n += 1
    return n


def build_labelled(dest: Path, seed: int = 1) -> int:
    """Write ``dest/{train,val}/<class>/<class>_NNN.jpg``; returns the number of images."""
    rng = np.random.default_rng(seed)
    n = 0
    out_hw = (LABELLED_SIZE, LABELLED_SIZE)
    for split, count, scale, flip in (
        ("train", LABELLED_TRAIN, (0.2, 0.4), False),
        ("val", LABELLED_VAL, (0.45, 0.7), True),
    ):
        for name in LABELLED_CLASSES:
            img = load_photo(name)
            folder = dest / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                box = _random_box(rng, img.shape[:2], out_hw, scale)
                crop = _colour_jitter(rng, _crop_resize(img, *box, out_hw, flip))
                crop.save(folder / f"{name}_{i:03d}.jpg", quality=JPEG_QUALITY)
                n += 1
    return n
