"""A small histology set for the hierarchical (HIPT) recipe, made from scikit-image's immunohistochemistry photo.

The 512 x 512 photo is turned into two 1024 x 1024 "slides" deterministically: slide ``ihc-a`` is the photo
up-sampled 2x (a higher magnification), slide ``ihc-b`` mirror-tiles the photo at its native scale, shifted so that
the mirror seams cross the middle of the slide. Each slide is one 1024 x 1024 **region** (sides multiples of 256,
a 4 x 4 grid of 256 px patches) and is cut into 256 x 256 **tiles** for stage-1 pretraining,
taken from inside the regions as HIPT does. PNG regions of real tissue texture are about
1.5 MB each, so the set keeps two. File names carry the slide name and the level-0 top-left corner of the region
or tile in the slide: ``<slide>_x<X>_y<Y>.png`` (regions) and ``<slide>_x<X>_y<Y>.jpg`` (tiles).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dino_lib.data.sample_photos import JPEG_QUALITY, load_photo

__all__ = ["SLIDE_NAMES", "REGION_SIZE", "TILE_SIZE", "make_slides", "build_histology_regions", "build_histology_tiles"]

SLIDE_NAMES = ("ihc-a", "ihc-b")
REGION_SIZE = 1024
TILE_SIZE = 256
SLIDE_HW = (1024, 1024)
_SEAM_SHIFT = 256  # where ihc-b starts inside the mirror-tiled pattern


def _mirror_tile(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Fill an (H, W) canvas with ``img`` and its mirror images, so the texture continues across the seams."""
    h, w = img.shape[:2]
    reps = (-(-hw[0] // h) + 1, -(-hw[1] // w) + 1)
    strip = np.concatenate([img if c % 2 == 0 else img[:, ::-1] for c in range(reps[1])], 1)
    canvas = np.concatenate([strip if r % 2 == 0 else strip[::-1] for r in range(reps[0])], 0)
    return np.ascontiguousarray(canvas[: hw[0], : hw[1]])


def make_slides() -> dict[str, np.ndarray]:
    """The two slides as (1024, 1024, 3) uint8 arrays."""
    photo = load_photo("immunohistochemistry")
    up = np.asarray(Image.fromarray(photo).resize(SLIDE_HW[::-1], Image.Resampling.BICUBIC))
    shifted = _mirror_tile(photo, (SLIDE_HW[0] + _SEAM_SHIFT, SLIDE_HW[1] + _SEAM_SHIFT))[_SEAM_SHIFT:, _SEAM_SHIFT:]
    return {"ihc-a": up, "ihc-b": np.ascontiguousarray(shifted)}


def _grid(hw: tuple[int, int], size: int) -> list[tuple[int, int]]:
    """Top-left (x, y) corners of a row-major grid of ``size`` squares."""
    return [(x, y) for y in range(0, hw[0] - size + 1, size) for x in range(0, hw[1] - size + 1, size)]


def _write_squares(dest: Path, size: int, suffix: str, **save_kwargs: int) -> int:
    """Write ``dest/<slide>_x<X>_y<Y><suffix>`` squares of ``size`` on a grid over each slide; returns their number."""
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, slide in make_slides().items():
        for x, y in _grid(slide.shape[:2], size):
            Image.fromarray(slide[y : y + size, x : x + size]).save(dest / f"{name}_x{x}_y{y}{suffix}", **save_kwargs)
            n += 1
    return n


def build_histology_regions(dest: Path) -> int:
    """Write ``dest/<slide>_x<X>_y<Y>.png`` regions of 1024 x 1024; returns the number of regions."""
    return _write_squares(dest, REGION_SIZE, ".png", compress_level=6)


def build_histology_tiles(dest: Path) -> int:
    """Write ``dest/<slide>_x<X>_y<Y>.jpg`` tiles of 256 x 256 covering every region; returns the number of tiles."""
    return _write_squares(dest, TILE_SIZE, ".jpg", quality=JPEG_QUALITY)
