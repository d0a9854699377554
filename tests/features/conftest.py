"""A tiny labelled folder made of real photos: each class is random crops of one scikit-image photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def make_labelled_folder(
    root: Path, n_train: int = 8, n_val: int = 4, size: int = 64, classes=PHOTOS[:3], seed: int = 0
) -> Path:
    """``root/{train,val}/<photo>/*.jpg``: random ``size``-px crops (with flips) of each photo."""
    from skimage import data

    rng = np.random.default_rng(seed)
    for name in classes:
        photo = getattr(data, name)()
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, -1)
        photo = np.asarray(Image.fromarray(photo[..., :3]).resize((160, 160 * photo.shape[0] // photo.shape[1])))
        for split, count in (("train", n_train), ("val", n_val)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                y = rng.integers(0, photo.shape[0] - size)
                x = rng.integers(0, photo.shape[1] - size)
                crop = photo[y : y + size, x : x + size]
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_labelled_folder(tmp_path_factory.mktemp("labelled"))
