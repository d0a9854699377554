"""Region-level DINO as a training task (docs/hierarchical.md).

``python -m dino_lib.train --config FILE`` with ``task: regions`` calls :func:`build_region_task`: the region
tensors are validated up front (:class:`~dino_lib.hierarchical.dataset.RegionFeatureDataset`), the crops are
exact token windows (:class:`~dino_lib.hierarchical.crops.RegionCrops`) and the student/teacher backbones are
region ViTs. Everything else (DINO head, loss, schedules, EMA, checkpoints) is the patch-level training loop.
The ``region:`` mapping of the training config is validated by :class:`RegionTaskConfig`.

Importing this module (``import dino_lib.hierarchical`` does) registers the task as ``regions`` with
:func:`dino_lib.train.tasks.register_task`; the training entry points import it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from dino_lib.config import ConfigError, from_dict, param
from dino_lib.data.samples import resolve_data_path
from dino_lib.hierarchical.crops import RegionCrops, derive_crop_sizes, validate_crop_sizes
from dino_lib.hierarchical.dataset import RegionDataError, RegionFeatureDataset
from dino_lib.hierarchical.extraction import ensure_region_features
from dino_lib.hierarchical.manifest import read_manifest
from dino_lib.runtime import env_world_size
from dino_lib.train.tasks import Task, register_task

__all__ = ["RegionTaskConfig", "build_region_task", "prepare_region_data", "resolve_region_config"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RegionTaskConfig:
    """The ``region:`` block of a training config (defaults = the HIPT/clemsgrs recipe)."""

    arch: str = param("vit4k_xs", help="region ViT name (dino_lib.models.build_region_vit)")
    g: int | None = param(None, help="tiles per region side; None = from the manifest")
    input_dim: int | None = param(None, help="tile-embedding width D; None = from the manifest")
    embed_dim: int | None = param(None, help="override the region ViT width (192)")
    depth: int | None = param(None, help="override the number of blocks (6)")
    num_heads: int | None = param(None, help="override the number of heads (6)")
    pos_grid: int | None = param(None, help="side of the positional table; None = the global crop size")
    global_crop_size: int | None = param(None, help="global crop side in tokens; None = int(0.875 * g)")
    local_crop_size: int | None = param(None, help="local crop side in tokens; None = int(0.375 * g)")
    global_crops_scale: float = param(0.875, gt=0, le=1, help="global side fraction (reference)")
    local_crops_scale: float = param(0.375, gt=0, le=1, help="local side fraction (reference)")
    hflip: float = param(0.5, ge=0, le=1)
    vflip: float = param(0.0, ge=0, le=1, help="improvement, off in the reference")
    rot90: bool = param(False, help="random 90-degree rotations (improvement, off in the reference)")
    exclude_slides: list[str] = param(default_factory=list, help="slide ids kept out of pretraining")
    exclude_slides_file: str | None = param(None, help="text file of slide ids to exclude (one per line)")
    pct: float | None = param(None, gt=0, le=1, help="seeded fraction of regions (identical on every rank)")
    check_finite: bool = param(True, help="reject NaN/Inf region tensors at load")
    in_memory: bool = param(True, help="keep validated tensors in memory (fp16)")
    extract_if_missing: dict | None = param(
        None, help="RegionExtractionConfig keys to extract a missing data_path first; null = a missing one is an error"
    )


def _manifest_path(data_path: Path) -> Path | None:
    if data_path.is_file():
        return data_path
    return data_path / "manifest.csv" if (data_path / "manifest.csv").is_file() else None


def resolve_region_config(region: dict[str, Any] | RegionTaskConfig, data_path: str | Path) -> RegionTaskConfig:
    """Validate the ``region`` mapping and fill g / input_dim from the manifest; check the crop sizes."""
    cfg = region if isinstance(region, RegionTaskConfig) else from_dict(RegionTaskConfig, region, prefix="region.")
    path = resolve_data_path(data_path)
    manifest = _manifest_path(path)
    if (cfg.g is None or cfg.input_dim is None) and manifest is not None:
        rows = read_manifest(manifest)
        if rows:
            updates = {}
            if cfg.g is None and int(rows[0]["g"]) > 0:
                updates["g"] = int(rows[0]["g"])
            if cfg.input_dim is None and int(rows[0]["D"]) > 0:
                updates["input_dim"] = int(rows[0]["D"])
            cfg = dataclasses.replace(cfg, **updates)
    if cfg.g is None:
        raise ConfigError(f"region.g is needed: {path} has no manifest recording g (legacy *.pt folder)")
    if cfg.input_dim is None:
        cfg = dataclasses.replace(cfg, input_dim=384)
    gs, ls = derive_crop_sizes(cfg.g, cfg.global_crops_scale, cfg.local_crops_scale)
    cfg = dataclasses.replace(
        cfg,
        global_crop_size=cfg.global_crop_size if cfg.global_crop_size is not None else gs,
        local_crop_size=cfg.local_crop_size if cfg.local_crop_size is not None else ls,
    )
    try:
        validate_crop_sizes(cfg.g, cfg.global_crop_size, cfg.local_crop_size)  # type: ignore[arg-type]
    except ValueError as err:
        raise ConfigError(f"region crops: {err}") from None
    return cfg


def prepare_region_data(region: dict[str, Any] | RegionTaskConfig, data_path: str | Path) -> RegionTaskConfig:
    """Extract the region tensors first if ``region.extract_if_missing`` asks for it and ``data_path`` does not
    exist (:func:`~dino_lib.hierarchical.extraction.ensure_region_features`), then :func:`resolve_region_config`."""
    cfg = region if isinstance(region, RegionTaskConfig) else from_dict(RegionTaskConfig, region, prefix="region.")
    if cfg.extract_if_missing is not None:
        ensure_region_features(data_path, cfg.extract_if_missing)
    return resolve_region_config(cfg, data_path)


def build_region_task(train_cfg: Any) -> Task:
    """Build the region-level DINO task from a training config (``task: regions``).

    Uses ``train_cfg.data_path``, ``local_crops_number``, ``drop_path_rate``, ``seed``, ``batch_size_per_gpu``
    and the ``region`` mapping (with ``region.extract_if_missing``, a missing ``data_path`` is extracted first).

    Raises:
        ConfigError: invalid ``region`` block or crop sizes that do not fit the grid.
        RegionDataError: bad region tensors (every file named), or fewer regions than one global batch.
    """
    from dino_lib.models.region_vit import build_region_vit

    cfg = prepare_region_data(dict(getattr(train_cfg, "region", {}) or {}), train_cfg.data_path)
    n_local = int(getattr(train_cfg, "local_crops_number", 8))
    seed = int(getattr(train_cfg, "seed", 0))
    crops = RegionCrops(cfg.g, cfg.global_crop_size, cfg.local_crop_size, n_local=n_local,  # type: ignore[arg-type]
                        hflip=cfg.hflip, vflip=cfg.vflip, rot90=cfg.rot90)  # fmt: skip
    excluded = list(cfg.exclude_slides)
    if cfg.exclude_slides_file:
        from dino_lib.hierarchical.dataset import read_slide_list

        excluded += sorted(read_slide_list(cfg.exclude_slides_file))
    dataset = RegionFeatureDataset(
        resolve_data_path(train_cfg.data_path), g=cfg.g, dim=cfg.input_dim, transform=crops,  # type: ignore[arg-type]
        exclude_slides=excluded, pct=cfg.pct, seed=seed, check_finite=cfg.check_finite, in_memory=cfg.in_memory,
    )  # fmt: skip
    world = env_world_size()
    batch = int(getattr(train_cfg, "batch_size_per_gpu", 1)) * world
    if len(dataset) < batch:
        raise RegionDataError(
            f"{train_cfg.data_path}: {len(dataset)} regions but a global batch of {batch} "
            f"(batch_size_per_gpu x {world} processes): an epoch would have 0 iterations; lower batch_size_per_gpu"
        )
    sizes = {k: v for k, v in {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads}.items()
             if v is not None}  # fmt: skip
    common = {"input_dim": cfg.input_dim, "pos_grid": cfg.pos_grid or cfg.global_crop_size, **sizes}
    student = build_region_vit(cfg.arch, drop_path_rate=float(getattr(train_cfg, "drop_path_rate", 0.1)), **common)
    teacher = build_region_vit(cfg.arch, drop_path_rate=0.0, **common)
    log.info("region task: %d regions, g=%d, D=%d, %r", len(dataset), cfg.g, cfg.input_dim, crops)
    return Task(
        dataset=dataset,
        collate_fn=None,
        student_backbone=student,
        teacher_backbone=teacher,
        embed_dim=student.embed_dim,
        n_global_crops=2,
        n_local_crops=n_local,
    )


register_task("regions", build_region_task)
