"""Labelled folders: layout checks with clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dino_lib.data.labelled import DataError, labelled_splits
from dino_lib.features import eval_transform


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_splits_share_sorted_classes(labelled_folder: Path):
    splits = labelled_splits(labelled_folder, None, eval_transform(64, 56))
    assert splits.classes == sorted(splits.classes) == ["astronaut", "chelsea", "coffee"]
    assert len(splits.train) == 24 and len(splits.val) == 12
    image, label = splits.val[0]
    assert tuple(image.shape) == (3, 56, 56) and label == 0


def test_mismatched_class_sets(labelled_folder: Path, tmp_path: Path):
    root = _copy(labelled_folder, tmp_path / "d")
    shutil.rmtree(root / "val" / "coffee")
    with pytest.raises(DataError, match=r"missing \['coffee'\]"):
        labelled_splits(root, None, None)


def test_empty_class_and_missing_split(labelled_folder: Path, tmp_path: Path):
    root = _copy(labelled_folder, tmp_path / "d")
    (root / "train" / "empty").mkdir()
    (root / "val" / "empty").mkdir()
    with pytest.raises(DataError, match=r"\['empty'\] hold no images"):
        labelled_splits(root, None, None)
    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match="no 'val/' folder"):
        labelled_splits(root, None, None)
    with pytest.raises(DataError, match="folder not found"):
        labelled_splits(tmp_path / "nowhere", None, None)


def test_unreadable_image_names_the_file(labelled_folder: Path, tmp_path: Path):
    root = _copy(labelled_folder, tmp_path / "d")
    bad = root / "val" / "astronaut" / "000.jpg"
    bad.write_bytes(b"not a jpeg")
    splits = labelled_splits(root, None, None)
    with pytest.raises(DataError, match="000.jpg: cannot read the image"):
        splits.val[0]
