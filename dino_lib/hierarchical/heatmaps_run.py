"""Configured HIPT heat-map run for notebooks and the command line: load both stages, compute shift-averaged maps,
save the arrays.

Outputs in ``output_dir``: ``config.yaml`` and ``heatmaps.npz`` (``image``, ``tile_maps``, ``region_maps``, pass
counts). The overlay images (``overlay_tile.png`` / ``overlay_region.png`` / ``overlay_blend.png``, head 0 of each
level, coloured with ``cmap`` and ``alpha``) are drawn from the returned maps by
:func:`dino_lib.viz.hipt.save_hipt_overlays`, which the notebook and the command line call next.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from pathlib import Path

import numpy as np

from dino_lib.config import param, save_run_config
from dino_lib.data.samples import resolve_data_path
from dino_lib.hierarchical.composer import HIPTComposer, load_hipt
from dino_lib.hierarchical.heatmaps import HIPTHeatmaps, hipt_heatmaps
from dino_lib.hierarchical.sources import read_image
from dino_lib.runtime import resolve_device
from dino_lib.utils.io import atomic_write_bytes

__all__ = ["HIPTHeatmapConfig", "run_hipt_heatmaps"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class HIPTHeatmapConfig:
    """Parameters of ``notebooks/hipt_heatmaps.ipynb`` (``params/hipt_heatmaps/*.yaml``)."""

    task: str = param("hipt", choices=["hipt"], help="selects this config in `python -m dino_lib.attention`")
    image_path: str = param("sample:histology_regions/ihc-a_x0_y0.png", help="one region image")
    pretrained_weights: str | None = param(None, help="stage-1 backbone; None = random tiny ViT (warning)")
    region_weights: str | None = param(None, help="stage-2 region ViT (teacher export); None = random")
    checkpoint_key: str = param("teacher")
    tile_size: int = param(256, gt=0)
    input_size: int | None = param(None, help="resize tiles before the stage-1 ViT (None = tile_size)")
    normalization: str = param("auto", choices=["auto", "imagenet", "hipt"])
    pad_mode: str = param("pad", choices=["pad", "crop"])
    batch_size: int = param(256, gt=0, help="tiles per stage-1 forward")
    scale: int = param(4, gt=0, help="output down-sampling (HIPT: 2 or 4)")
    tile_normalization: str = param("tile", choices=["tile", "region", "minmax", "raw"])
    region_normalization: str = param("region", choices=["region", "minmax", "raw"])
    region_kwargs: dict = param(default_factory=dict, help="size of the random region ViT (no region_weights)")
    cmap: str = param("coolwarm")
    alpha: float = param(0.5, ge=0, le=1)
    output_dir: str = param("runs/hipt_heatmaps")
    device: str = param("auto")


def run_hipt_heatmaps(cfg: HIPTHeatmapConfig) -> tuple[HIPTHeatmaps, HIPTComposer]:
    """Load both stages, compute the maps of ``cfg.image_path`` and write ``heatmaps.npz`` to ``cfg.output_dir``."""
    device = resolve_device(cfg.device)
    composer = load_hipt(cfg.pretrained_weights, cfg.region_weights, tile_size=cfg.tile_size,
                         input_size=cfg.input_size, normalization=cfg.normalization, checkpoint_key=cfg.checkpoint_key,
                         region_kwargs=cfg.region_kwargs, batch_size=cfg.batch_size,
                         pad_mode=cfg.pad_mode, device=device)  # type: ignore[arg-type]  # fmt: skip
    image = read_image(resolve_data_path(cfg.image_path))
    maps = hipt_heatmaps(composer, image, scale=cfg.scale, tile_normalization=cfg.tile_normalization,  # type: ignore[arg-type]
                         region_normalization=cfg.region_normalization)  # type: ignore[arg-type]  # fmt: skip
    out = Path(cfg.output_dir)
    save_run_config(cfg, out)
    arrays = {k: v for k, v in dataclasses.asdict(maps).items() if isinstance(v, np.ndarray)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # a file object: np.savez would append ".npz" to a temporary name
    atomic_write_bytes(out / "heatmaps.npz", buffer.getvalue())
    log.info("heat maps of %s (grid %s) written to %s", cfg.image_path, maps.grid_hw, out)
    return maps, composer
