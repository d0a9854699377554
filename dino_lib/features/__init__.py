"""Frozen feature extraction: reference eval transform, CLS / last-n-block layouts, distributed gathering in
dataset order, and disk caches keyed by weights, transform and dataset listing (docs/evaluation.md).
Command-line twin: ``python -m dino_lib.features --config FILE`` (``task: regions`` extracts HIPT region
tensors instead)."""

from dino_lib.features.backbone import build_eval_backbone, infer_vit_spec
from dino_lib.features.cache import (
    CacheMismatchError,
    cache_key,
    cached_extract,
    dump_reference_features,
    feature_cache_meta,
    load_reference_features,
)
from dino_lib.features.extract import (
    ExtractedFeatures,
    backbone_features,
    extract_features,
    linear_features,
    resolve_device,
)
from dino_lib.features.transforms import describe_transform, eval_transform, linear_train_transform

__all__ = [
    "CacheMismatchError",
    "ExtractedFeatures",
    "backbone_features",
    "build_eval_backbone",
    "cache_key",
    "cached_extract",
    "describe_transform",
    "dump_reference_features",
    "eval_transform",
    "extract_features",
    "feature_cache_meta",
    "infer_vit_spec",
    "linear_features",
    "linear_train_transform",
    "load_reference_features",
    "resolve_device",
]
