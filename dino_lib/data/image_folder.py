"""Pretraining image datasets: class sub-folders or a flat folder found recursively.

* ``root/<class>/**/*.jpg`` (torchvision ``ImageFolder`` layout): labels are the sorted class folders.
* ``root/**/*.jpg`` with images directly under ``root`` (e.g. ``patch_256_pretraining/imgs/*.jpg`` given as
  ``.../imgs``) or anywhere below when there is no class layout: one label 0.

The file order is sorted, hence deterministic. Images are checked before training (``check="decode"`` decodes
every file, ``"open"`` reads headers only): unreadable files are an error naming them, or are skipped and counted.
:class:`SeededCrops` makes augmentation a pure function of ``(seed, epoch, index)``, which is what lets an
interrupted run resume bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dino_lib.data.decode import ImageReadError, check_images, load_rgb

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "ImageDataset", "SeededCrops", "find_images", "CorruptImagesError"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class CorruptImagesError(ValueError):
    """Some image files cannot be read; ``files`` lists them."""

    def __init__(self, message: str, files: list[Path]) -> None:
        super().__init__(message)
        self.files = files


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def find_images(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """Sorted image files below ``root``, their labels and the class names (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root} (set data_path to a folder of images)")
    direct = sorted(p for p in root.iterdir() if _is_image(p))
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if direct or not subdirs:
        files = sorted(p for p in root.rglob("*") if _is_image(p))
        return files, [0] * len(files), ["all"]
    files, labels, classes = [], [], []
    for d in subdirs:
        found = sorted(p for p in d.rglob("*") if _is_image(p))
        if found:
            labels += [len(classes)] * len(found)
            classes.append(d.name)
            files += found
    return files, labels, classes


class ImageDataset(Dataset):
    """Images of a folder with an optional transform; items are ``(transform(rgb_image), label)``.

    Args:
        root: the folder.
        transform: applied to the RGB PIL image.
        check: ``"decode"`` (decode every image), ``"open"`` (headers only), ``"off"``, or ``"auto"`` (decode up to
            5000 images, else headers only).
        skip_corrupt: drop unreadable files (counted in ``n_skipped``, listed in ``skipped``) instead of raising.

    Raises:
        FileNotFoundError: missing folder. ValueError: no image found. CorruptImagesError: unreadable files.
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        check: str = "decode",
        skip_corrupt: bool = False,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        files, labels, self.classes = find_images(self.root)
        if not files:
            raise ValueError(
                f"no images found in {self.root} (0 files with extensions {', '.join(IMAGE_EXTENSIONS)}); "
                "point data_path to a folder of images or of class sub-folders"
            )
        self.skipped: list[Path] = []
        if check != "off":
            limit = {"decode": len(files), "open": 0}.get(check, 5000)  # "auto": decode up to 5000, then headers
            self.skipped, reasons = check_images(files, decode_limit=limit)
            if self.skipped and not skip_corrupt:
                shown = "\n  ".join(reasons[:20])
                more = f"\n  ... and {len(self.skipped) - 20} more" if len(self.skipped) > 20 else ""
                raise CorruptImagesError(
                    f"{len(self.skipped)} of {len(files)} images in {self.root} cannot be read:\n  {shown}{more}\n"
                    "remove or replace them, or set skip_corrupt_images: true to skip them",
                    self.skipped,
                )
            bad = set(self.skipped)
            labels = [lab for p, lab in zip(files, labels) if p not in bad]
            files = [p for p in files if p not in bad]
            if self.skipped:
                logger.warning("skipped %d unreadable images in %s", len(self.skipped), self.root)
        if not files:
            raise ValueError(f"no readable images left in {self.root} ({len(self.skipped)} skipped)")
        self.files, self.labels = files, labels

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """The decoded item; an unreadable file (e.g. truncated, found only now because ``check`` read headers
        only) is an error naming it, or, with ``skip_corrupt``, replaced by the next readable file (a warning names
        the file), so that the item stays a deterministic function of ``index``."""
        for step in range(len(self.files)):
            i = (index + step) % len(self.files)
            try:
                image = load_rgb(self.files[i])
            except ImageReadError as err:
                if not self.skip_corrupt:
                    raise ImageReadError(
                        f"{err}; or set skip_corrupt_images: true to skip unreadable images", err.path
                    ) from None
                logger.warning("skipping unreadable image (replaced by the next one): %s", err)
                continue
            return (self.transform(image) if self.transform is not None else image), self.labels[i]
        raise ImageReadError(f"no readable image left in {self.root}", self.root)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch."""
    return int(
        np.random.SeedSequence([seed, epoch, index])
        .generate_state(2, dtype=np.uint32)
        .astype(np.uint64)
        .dot(np.array([1 << 31, 1], dtype=np.uint64))
    )


class SeededCrops(Dataset):
    """Wrap a dataset so item ``i`` of epoch ``e`` is computed under the torch seed ``f(seed, e, i)``.

    The global torch RNG of the caller (and of data-loader workers) is saved and restored around each item, so
    model randomness (drop path) does not depend on the data pipeline, and vice versa. Call :meth:`set_epoch`
    before iterating an epoch (data-loader workers are re-created every epoch, so they see the new value).
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, index))
            return self.dataset[index]
