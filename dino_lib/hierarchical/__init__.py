"""Hierarchical (HIPT) pretraining: tiling and ordering, region tensors, region crops, the region task, composer.

Stage 1 is patch-level DINO (:mod:`dino_lib.train`); :mod:`dino_lib.features.regions` turns regions into
``[g*g, D]`` tensors with a manifest; :mod:`dino_lib.hierarchical.region_task` trains the region ViT with region-level
DINO through the same training entry point; :mod:`dino_lib.hierarchical.composer` and
:mod:`dino_lib.attention.hipt` use both stages on a region image. See ``docs/hierarchical.md``.
"""

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
