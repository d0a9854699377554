"""Backbones, checkpoint loading and (as they are added) heads and wrappers."""

from dino_lib.data.normalization import IMAGENET_MEAN, IMAGENET_STD  # re-exported: models sits above data
from dino_lib.models.backbones import available_backbones, build_backbone
from dino_lib.models.loading import CheckpointError, LoadReport, load_pretrained, state_dict_hash
from dino_lib.models.pos_embed import interpolate_pos_embed
from dino_lib.models.vit import VIT_SIZES, DinoVisionTransformer, explicit_attention

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VIT_SIZES",
    "CheckpointError",
    "DinoVisionTransformer",
    "LoadReport",
    "available_backbones",
    "build_backbone",
    "explicit_attention",
    "interpolate_pos_embed",
    "load_pretrained",
    "state_dict_hash",
]

from dino_lib.models.head import DINOHead  # noqa: E402
from dino_lib.models.multicrop import MultiCropWrapper  # noqa: E402

__all__ += ["DINOHead", "MultiCropWrapper"]

from dino_lib.models.region_vit import RegionViT, build_region_vit, load_region_vit  # noqa: E402

__all__ += ["RegionViT", "build_region_vit", "load_region_vit"]

from dino_lib.models.spec import (  # noqa: E402
    BackboneSpec,
    build_and_load,
    infer_architecture,
    infer_vit_kwargs,
    infer_vit_spec,
)

__all__ += ["BackboneSpec", "build_and_load", "infer_architecture", "infer_vit_kwargs", "infer_vit_spec"]
