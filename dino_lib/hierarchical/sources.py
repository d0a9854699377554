"""Where region images come from: a folder of region images, or a folder of tiles named by grid coordinates.

* ``layout="regions"``: every image file (sorted, recursively) is one region; slide id and level-0 ``(x, y)``
  come from the name (``<slide>_x<X>_y<Y>`` or ``<slide>_<X>_<Y>``), else the parent folder and (0, 0).
* ``layout="tiles"``: tiles ``<slide>_x<X>_y<Y>.<ext>`` (or ``<X>_<Y>.<ext>`` inside a slide folder) are grouped
  into regions of ``region_size`` pixels aligned to the slide's top-left tile; a region is kept only when all
  its ``g x g`` tiles exist (incomplete regions are counted and logged, never silently padded).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dino_lib.data.decode import load_rgb
from dino_lib.data.image_folder import IMAGE_EXTENSIONS
from dino_lib.hierarchical.tiling import PadMode, fit_region, parse_tile_name, tile_region

__all__ = ["RegionSource", "list_regions", "load_region_tiles", "read_image"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RegionSource:
    """One region to encode: its id, slide, level-0 origin and the files it is read from."""

    region_id: str
    slide_id: str
    x: int
    y: int
    files: list[Path]  # one region image, or g*g tiles in row-major order


def read_image(path: Path, as_uint8: bool = False) -> torch.Tensor:
    """RGB image -> float ``(3, H, W)`` in [0, 1] (or the raw uint8 values: 4x less memory while queued)."""
    array = np.array(load_rgb(path), dtype=np.uint8)
    image = torch.from_numpy(array).permute(2, 0, 1)
    return image if as_uint8 else image.float().div_(255.0)


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _slide_folder(path: Path) -> str:
    """Slide id of a file named only by coordinates: its folder, skipping HS2P's ``imgs``/``jpg`` sub-folders."""
    parent = path.parent
    return parent.parent.name if parent.name in ("imgs", "jpg", "png", "tiles") else parent.name


def _region_from_file(path: Path, root: Path) -> RegionSource:
    try:
        slide, x, y = parse_tile_name(path.stem)
    except ValueError:
        slide, x, y = None, 0, 0
    region_id = path.stem
    if slide is None and path.parent != root:  # HS2P: <slide>/imgs/<x>_<y>.jpg -> id "<slide>_<x>_<y>"
        slide = _slide_folder(path)
        region_id = f"{slide}_{path.stem}"
    return RegionSource(region_id=region_id, slide_id=slide or path.stem, x=x, y=y, files=[path])


def list_regions(
    root: str | Path, *, layout: str = "regions", region_size: int | None = None, tile_size: int = 256
) -> list[RegionSource]:
    """All regions under ``root`` in a deterministic order (slide, y, x).

    Raises:
        FileNotFoundError: ``root`` missing or without images (names the path and the extensions looked for).
        ValueError: tiles layout without ``region_size``, or tile names without coordinates.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"region data folder not found: {root}")
    files = _images(root)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    if layout == "regions":
        regions = [_region_from_file(p, root) for p in files]
    elif layout == "tiles":
        regions = _group_tiles(files, root, region_size, tile_size)
    else:
        raise ValueError(f"unknown input layout {layout!r}; expected 'regions' or 'tiles'")
    ids = [r.region_id for r in regions]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"{root}: duplicate region ids {dup}; region file names must be unique")
    return sorted(regions, key=lambda r: (r.slide_id, r.y, r.x, r.region_id))


def _group_tiles(files: list[Path], root: Path, region_size: int | None, tile_size: int) -> list[RegionSource]:
    if not region_size or region_size % tile_size:
        raise ValueError(f"layout 'tiles' needs region_size, a multiple of tile_size={tile_size}; got {region_size}")
    g = region_size // tile_size
    by_slide: dict[str, dict[tuple[int, int], Path]] = defaultdict(dict)
    for path in files:
        slide, x, y = parse_tile_name(path.stem)
        by_slide[slide or _slide_folder(path)][(x, y)] = path
    regions, incomplete = [], 0
    for slide, tiles in by_slide.items():
        x0, y0 = min(x for x, _ in tiles), min(y for _, y in tiles)
        origins = {(x0 + (x - x0) // region_size * region_size, y0 + (y - y0) // region_size * region_size)
                   for x, y in tiles}  # fmt: skip
        for rx, ry in sorted(origins, key=lambda o: (o[1], o[0])):
            cells = [(rx + c * tile_size, ry + r * tile_size) for r in range(g) for c in range(g)]  # row-major
            if not all(cell in tiles for cell in cells):
                incomplete += 1
                continue
            files_rm = [tiles[cell] for cell in cells]
            regions.append(RegionSource(f"{slide}_x{rx}_y{ry}", slide, rx, ry, files_rm))
    if incomplete:
        log.warning("%d incomplete regions (fewer than %dx%d tiles) skipped under %s", incomplete, g, g, root)
    if not regions:
        raise ValueError(f"{root}: no complete {g}x{g}-tile regions of {region_size} px found")
    return regions


def load_region_tiles(
    source: RegionSource, tile_size: int, pad_mode: PadMode = "error"
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """Read a region as row-major uint8 tiles ``(g_h * g_w, 3, t, t)`` (the encoder scales them to [0, 1]).

    Returns:
        ``(tiles, (g_h, g_w), (H, W))`` where ``(H, W)`` is the region size in pixels after fitting.
    """
    if len(source.files) == 1:
        image = read_image(source.files[0], as_uint8=True)
        image = fit_region(image, tile_size, pad_mode, fill=255, name=str(source.files[0]))  # white padding
        tiles, grid = tile_region(image, tile_size)
        return tiles, grid, (image.shape[-2], image.shape[-1])
    tiles = torch.stack([read_image(p, as_uint8=True) for p in source.files])  # (g*g, 3, t, t)
    if tiles.shape[-2:] != (tile_size, tile_size):
        raise ValueError(f"{source.files[0]}: tile of {tuple(tiles.shape[-2:])} px, expected {tile_size}x{tile_size}")
    g = int(round(len(source.files) ** 0.5))
    return tiles, (g, g), (g * tile_size, g * tile_size)
