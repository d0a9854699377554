"""The digits sample set: every bundled scan once, a fixed stratified held-out split, 32 px RGB images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dino_lib.data.sample_digits import DIGITS_SIZE, build_digits


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("sample")
    return root, build_digits(root / "digits")


def test_digits_split_is_complete_stratified_and_disjoint(built: tuple[Path, int]) -> None:
    from sklearn.datasets import load_digits

    tmp_path, count = built
    labels = load_digits().target
    assert count == len(labels) == 1797
    files = {split: sorted((tmp_path / "digits" / split).rglob("*.png")) for split in ("train", "val")}
    assert len(files["train"]) + len(files["val"]) == count
    names = {split: {p.name for p in paths} for split, paths in files.items()}
    assert not names["train"] & names["val"]  # no scan in both splits
    for digit in range(10):
        n_class = int((labels == digit).sum())
        n_val = len(list((tmp_path / "digits" / "val" / str(digit)).glob("*.png")))
        assert n_val == n_class // 4  # every fourth scan of each class is held out
    image = Image.open(files["val"][0])
    assert image.mode == "RGB" and image.size == (DIGITS_SIZE, DIGITS_SIZE)


def test_digits_images_keep_the_scans(built: tuple[Path, int]) -> None:
    """Down-sampling a stored image back to 8 x 8 gives the bundled scan (strokes are not shifted or lost)."""
    from sklearn.datasets import load_digits

    tmp_path, _ = built
    scans = load_digits().images
    path = next((tmp_path / "digits" / "train" / "3").glob("*.png"))
    index = int(path.stem.split("_")[1])
    small = np.asarray(Image.open(path).convert("L").resize((8, 8), Image.Resampling.BOX), dtype=float)
    corr = np.corrcoef(small.ravel(), scans[index].ravel())[0, 1]
    assert corr > 0.9
