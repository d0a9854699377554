"""Labelled image folders for k-NN and linear probes.

Layout: ``data_path/train/<class>/*`` and ``data_path/val/<class>/*``; labels are the indices of the sorted class
folder names, as torchvision's ``ImageFolder``. Unlike the reference, problems are reported before any work
starts: a missing split, class sets that differ between train and val, a class folder without images. An image
that cannot be decoded raises an error naming the file (at load time, so large folders are not decoded twice).

``data_path`` may be ``sample:labelled`` (resolved by :func:`dino_lib.data.samples.resolve_data_path`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from dino_lib.data.decode import ImageReadError, check_images, load_rgb
from dino_lib.data.image_folder import IMAGE_EXTENSIONS  # one list of readable image files for every folder reader
from dino_lib.data.samples import resolve_data_path

__all__ = [
    "DataError",
    "LabelledImageFolder",
    "LabelledSplits",
    "check_folder_images",
    "labelled_splits",
]


class DataError(ValueError):
    """A labelled folder does not have the expected layout; the message names the folder and the fix."""


class LabelledImageFolder(Dataset):
    """``root/<class>/<image>`` with sorted class names; items are ``(transform(image), label)``.

    Args:
        root: the split folder (e.g. ``data_path/train``).
        transform: applied to the RGB PIL image.
        classes: expected class names (e.g. those of train when building val); a different set is an error.

    Raises:
        DataError: missing folder, no class folders, a class without images, or unexpected class set.
    """

    def __init__(
        self, root: str | Path, transform: Callable[[Image.Image], Any] | None = None, classes: list[str] | None = None
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        if not self.root.is_dir():
            raise DataError(f"{self.root}: folder not found; expected a split folder with one sub-folder per class")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise DataError(f"{self.root}: no class sub-folders; expected {self.root}/<class>/<image>.jpg")
        if classes is not None and found != list(classes):
            missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
            raise DataError(
                f"{self.root}: class folders differ from the training split: missing {missing}, unexpected {extra}. "
                "train/ and val/ must hold the same class sub-folders (labels are the sorted folder indices)"
            )
        self.classes = found
        self.class_to_idx = {c: i for i, c in enumerate(found)}
        samples: list[tuple[Path, int]] = []
        empty = []
        for name in found:
            files = sorted(
                p for p in (self.root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                empty.append(name)
            samples += [(p, self.class_to_idx[name]) for p in files]
        if empty:
            raise DataError(
                f"{self.root}: class folder(s) {empty} hold no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder from every split"
            )
        self.samples = samples
        self.targets = [label for _, label in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> Image.Image:
        path = self.samples[index][0]
        try:
            return load_rgb(path)
        except ImageReadError as err:
            raise DataError(str(err)) from None

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load_image(index)
        return (self.transform(image) if self.transform is not None else image), self.samples[index][1]

    def listing_hash(self) -> str:
        """Hash of the file listing (relative paths, labels, sizes, modification times) for cache keys."""
        digest = hashlib.sha256()
        for path, label in self.samples:
            stat = path.stat()
            digest.update(f"{path.relative_to(self.root)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def labels_tensor(self) -> torch.Tensor:
        return torch.tensor(self.targets, dtype=torch.int64)


@dataclasses.dataclass
class LabelledSplits:
    """Train and val datasets over the same classes."""

    train: LabelledImageFolder
    val: LabelledImageFolder

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def check_folder_images(folders: Sequence[LabelledImageFolder]) -> None:
    """Decode the images of ``folders`` (in the order given: put the validation split first) before any feature is
    extracted, within the budgets of :func:`dino_lib.data.decode.check_images` (5000 decodes, 5 minutes in all),
    so a bad validation image is reported before hours of training-set extraction, not after. Raises
    :class:`DataError` listing the unreadable files."""
    files = [p for folder in folders for p, _ in folder.samples]
    bad, reasons = check_images(files, total_budget_s=300.0)
    if bad:
        shown = "\n  ".join(reasons[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DataError(f"{len(bad)} of {len(files)} images cannot be read:\n  {shown}{more}\nremove or replace them")


def labelled_splits(
    data_path: str | Path,
    train_transform: Callable | None,
    val_transform: Callable | None,
    *,
    train_split: str = "train",
    val_split: str = "val",
) -> LabelledSplits:
    """Build the train and val folders of ``data_path`` and check that their classes agree."""
    root = resolve_data_path(data_path)
    if not root.is_dir():
        raise DataError(
            f"data_path {data_path!s} -> {root}: folder not found; expected {train_split}/ and {val_split}/"
        )
    for split in (train_split, val_split):
        if not (root / split).is_dir():
            raise DataError(
                f"{root}: no '{split}/' folder; expected {root}/{train_split}/<class>/ and {root}/{val_split}/<class>/"
            )
    train = LabelledImageFolder(root / train_split, train_transform)
    val = LabelledImageFolder(root / val_split, val_transform, classes=train.classes)
    return LabelledSplits(train=train, val=val)
