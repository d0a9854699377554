"""The frozen stage-1 tile encoder: loading, normalisation presets and batched tile embedding.

One normalisation is recorded and applied everywhere: the presets name the two behaviours of the
references explicitly — ``"imagenet"`` (stage-1 training statistics) and ``"hipt"`` (mean = std = 0.5, HIPT_4K
inference with the released weights). ``"auto"`` takes what the stage-1 run recorded (its checkpoint or the
``config.yaml`` beside it) and falls back to ImageNet, the training default.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from dino_lib.data.normalization import NORMALIZATIONS, Stats
from dino_lib.models import BackboneSpec, build_and_load, infer_vit_kwargs, state_dict_hash
from dino_lib.utils.io import safe_torch_load

__all__ = [
    "NORMALIZATIONS",
    "TileEncoder",
    "infer_vit_kwargs",
    "load_tile_encoder",
    "recorded_normalization",
    "resolve_normalization",
]

log = logging.getLogger(__name__)


def _stats_from_mapping(data: Any) -> Stats | None:
    """Find ``mean``/``std`` (or a ``normalization`` preset name) in a checkpoint or run config mapping."""
    if not isinstance(data, dict):
        return None
    for key in ("normalization", "normalize", "norm"):
        value = data.get(key)
        if isinstance(value, str) and value in NORMALIZATIONS:
            return NORMALIZATIONS[value]
        if isinstance(value, dict) and "mean" in value and "std" in value:
            return tuple(value["mean"]), tuple(value["std"])  # type: ignore[return-value]
    if "mean" in data and "std" in data and len(data["mean"]) == 3:
        return tuple(data["mean"]), tuple(data["std"])  # type: ignore[return-value]
    for nested in ("data", "augmentation", "aug", "config", "meta"):
        found = _stats_from_mapping(data.get(nested))
        if found:
            return found
    return None


def recorded_normalization(weights: str | Path | None, checkpoint: Any = None) -> Stats | None:
    """The normalisation stage 1 was trained with, if its checkpoint or run ``config.yaml`` records one."""
    if weights is None:
        return None
    found = _stats_from_mapping(checkpoint) if isinstance(checkpoint, dict) else None
    if found is None and isinstance(checkpoint, dict):
        args = checkpoint.get("args")
        found = _stats_from_mapping(vars(args) if hasattr(args, "__dict__") else args)
    config = Path(weights).parent / "config.yaml"
    if found is None and config.is_file():
        found = _stats_from_mapping(yaml.safe_load(config.read_text()) or {})
    return found


def resolve_normalization(name: str, recorded: Stats | None, source: str = "") -> Stats:
    """Pick the statistics for preset ``name``; a preset that contradicts the recorded one is an error."""
    if name == "auto":
        if recorded is None:
            log.warning("stage-1 normalisation not recorded in %s; using ImageNet statistics", source or "the weights")
            return NORMALIZATIONS["imagenet"]
        return recorded
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r}; expected one of {['auto', *NORMALIZATIONS]}")
    stats = NORMALIZATIONS[name]
    if recorded is not None and any(
        not math.isclose(a, b, abs_tol=1e-4) for a, b in zip(stats[0] + stats[1], recorded[0] + recorded[1])
    ):
        raise ValueError(
            f"normalization {name!r} ({stats}) differs from the one stage 1 was trained with ({recorded}, recorded "
            f"in {source}); use normalization='auto' so tiles are normalised as in training "
            "(docs/hierarchical.md, Region extraction)"
        )
    return stats


class TileEncoder(nn.Module):
    """Frozen stage-1 ViT + tile pre-processing: ``(N, 3, t, t)`` in [0, 1] -> CLS ``(N, D)``.

    Args:
        backbone: a ViT whose ``forward`` returns the final-normed CLS.
        mean, std: normalisation statistics.
        input_size: tiles are resized to this side before the encoder (None = tile size; small CI runs).
    """

    def __init__(self, backbone: nn.Module, mean: tuple, std: tuple, input_size: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.input_size = input_size
        self.embed_dim = backbone.embed_dim
        self.weights_hash = state_dict_hash(backbone)
        self.arch = getattr(backbone, "backbone_name", type(backbone).__name__)

    def preprocess(self, tiles: torch.Tensor) -> torch.Tensor:
        """Resize (optional, bicubic, anti-aliased) and normalise ``(N, 3, t, t)`` tiles in [0, 1] (or uint8)."""
        if tiles.dtype == torch.uint8:
            tiles = tiles.float().div_(255.0)  # on the encoder's device: uint8 crosses the bus, 4x smaller
        if self.input_size is not None and tiles.shape[-1] != self.input_size:
            size = (self.input_size, self.input_size)
            tiles = F.interpolate(tiles, size=size, mode="bicubic", align_corners=False, antialias=True)
        return (tiles - self.mean) / self.std

    @torch.no_grad()
    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.preprocess(tiles))


def load_tile_encoder(
    pretrained_weights: str | Path | None,
    *,
    arch: str = "auto",
    patch_size: int = 16,
    checkpoint_key: str = "teacher",
    normalization: str = "auto",
    input_size: int | None = None,
    fallback: dict[str, Any] | None = None,
) -> TileEncoder:
    """Build the stage-1 encoder; ``arch="auto"`` reads the ViT size from the weights.

    With ``pretrained_weights=None`` a randomly initialised ViT (``fallback`` kwargs, default a 2-block
    ``vit_tiny``) is used and a warning says so: its features are meaningless except for smoke tests.
    """
    if pretrained_weights is None:
        kwargs = {"depth": 2, **(fallback or {})}
        name = arch if arch != "auto" else "vit_tiny"
        log.warning(
            "pretrained_weights is None: using a RANDOM %s %s as stage-1 encoder (smoke test only)", name, kwargs
        )
        # seeded: a resumed extraction sees the same random encoder
        spec = BackboneSpec(name, patch_size=patch_size, kwargs=kwargs)
        backbone, _ = build_and_load(spec, seed=0, warn_random=False)
        stats = resolve_normalization(normalization, None, "random weights")
        return TileEncoder(backbone, *stats, input_size=input_size)
    path = Path(pretrained_weights)
    spec = BackboneSpec(arch, patch_size=patch_size, weights=path, checkpoint_key=checkpoint_key)
    backbone, report = build_and_load(spec)
    log.info("stage-1 encoder: %s", report)
    checkpoint = safe_torch_load(path)
    stats = resolve_normalization(normalization, recorded_normalization(path, checkpoint), str(path))
    return TileEncoder(backbone, *stats, input_size=input_size)
