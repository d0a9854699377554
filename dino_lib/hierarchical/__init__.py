"""Hierarchical (HIPT) pretraining: tiling and ordering, region extraction, region tensors, region crops, the region
task, composer and heat maps.

Stage 1 is patch-level DINO (:mod:`dino_lib.train`); :mod:`dino_lib.hierarchical.extraction` turns regions into
``[g*g, D]`` tensors with a manifest; :mod:`dino_lib.hierarchical.region_task` trains the region ViT with region-level
DINO through the same training entry point (importing this package registers the ``regions`` training task);
:mod:`dino_lib.hierarchical.composer` and :mod:`dino_lib.hierarchical.heatmaps` use both stages on a region image.
Figures of the heat maps are in :mod:`dino_lib.viz.hipt`. See ``docs/hierarchical.md``.
"""

from dino_lib.hierarchical import region_task  # noqa: F401  (registers the ``regions`` training task)
from dino_lib.hierarchical.crops import CropSizeError, RegionCrops, derive_crop_sizes, validate_crop_sizes
from dino_lib.hierarchical.dataset import RegionDataError, RegionFeatureDataset, check_region_tensor
from dino_lib.hierarchical.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from dino_lib.hierarchical.tiling import fit_region, grid_to_sequence, sequence_to_grid, tile_region, untile_region

__all__ = [
    "MANIFEST_COLUMNS",
    "CropSizeError",
    "RegionCrops",
    "RegionDataError",
    "RegionFeatureDataset",
    "check_region_tensor",
    "derive_crop_sizes",
    "fit_region",
    "grid_to_sequence",
    "read_manifest",
    "sequence_to_grid",
    "tile_region",
    "untile_region",
    "validate_crop_sizes",
    "write_manifest",
]
