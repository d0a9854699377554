"""A labelled set of a few thousand real images, from the handwritten digits bundled with scikit-learn.

``load_digits`` reads a CSV file shipped in the scikit-learn wheel (no download): 1797 scans of handwritten digits,
8 x 8 pixels with 17 grey levels, ten classes (the UCI "Optical Recognition of Handwritten Digits" test set, Alpaydin
and Kaynak 1998). They are the only labelled set of more than a thousand real images available offline in the
installed packages, which makes them the learning benchmark and the learning test of the pretraining recipes.

Layout (``digits/``): ``train/<d>/<d>_NNNN.png`` and ``val/<d>/<d>_NNNN.png`` with ``<d>`` the digit 0-9. Each scan
is up-sampled to 32 x 32 (bicubic; the ViTs here take patches of 4 px) and stored as an RGB PNG, white strokes on
black as in the source. The held-out split is fixed: every fourth image of each class (in the bundled order) goes
to ``val``, so about 25 % of each class (445 images) is never seen by pretraining on ``digits/train`` (1352).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DIGITS_SIZE", "VAL_EVERY", "build_digits"]

#: Side of the stored images (8 x 8 scans up-sampled 4x).
DIGITS_SIZE = 32
#: Every VAL_EVERY-th image of a class (in the bundled order) is held out.
VAL_EVERY = 4


def build_digits(out: Path) -> int:
    """Write ``out/{train,val}/<digit>/*.png``; returns the number of files."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float64)  # (N, 8, 8), values 0..16
    labels = np.asarray(digits.target, dtype=np.int64)
    count = 0
    for label in range(10):
        indices = np.flatnonzero(labels == label)
        for rank, index in enumerate(indices):
            split = "val" if rank % VAL_EVERY == VAL_EVERY - 1 else "train"
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            grey = np.clip(np.round(images[index] * (255.0 / 16.0)), 0, 255).astype(np.uint8)
            image = Image.fromarray(grey, mode="L").resize((DIGITS_SIZE, DIGITS_SIZE), Image.Resampling.BICUBIC)
            image.convert("RGB").save(folder / f"{label}_{index:04d}.png", optimize=False)
            count += 1
    return count
