"""Feature extractors for propagation: ``(B, 3, H, W) -> (B, D, h, w)`` with stride and normalisation attached.

* ``vit_tiny|vit_small|vit_base[_patch8|_patch16]``: our DINO ViTs; features = output of block ``layer`` through
  the final LayerNorm, CLS dropped (``get_intermediate_layers(x, n=1)`` for the last block, as DINO's DAVIS
  script); weights from a DINO checkpoint (``teacher`` or ``student``) or backbone-only file.
* ``mae_vit_base_patch16`` (also ``_large_patch16``, ``_huge_patch14``): MAE encoder, all blocks, no masking, final
  norm, CLS dropped; the fixed 2-D sin-cos table is **regenerated** for the new grid (``sincos``) or
  interpolated bicubically with the DINO +0.1 rule as the fork did (``interpolate``).
* ``timm:<name>``: any timm ViT built with ``dynamic_img_size=True`` from a local weights file;
  ``forward_intermediates`` at ``layer`` with the final norm; prefix tokens (CLS, registers) stripped;
  normalisation from the model's ``pretrained_cfg``.
* torchvision CNN names (``resnet50``, ...): the network cut after ``cnn_stage`` (default ``layer3``, stride 16,
  the CRW "res4" cut); stride measured from the cut graph.

Random initialisation (no ``pretrained_weights``) is allowed for tests and logged as a warning; a missing file is an
error and nothing is ever downloaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn

from dino_lib.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from dino_lib.models import BackboneSpec, build_and_load
from dino_lib.models.backbones import MAE_SIZES
from dino_lib.models.loading import state_dict_hash
from dino_lib.runtime import seeded

__all__ = ["FeatureExtractor", "build_extractor", "sincos_pos_embed_2d", "MAE_SIZES"]

logger = logging.getLogger(__name__)


def sincos_pos_embed_2d(dim: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table for an ``h x w`` grid, ``(h*w, dim)``, row-major.

    The first half of the channels encodes the x (column) coordinate and the second half the y (row) coordinate;
    each half is ``[sin(pos·ω), cos(pos·ω)]`` with ``ω_i = 10000^(-i/(dim/4))`` (He et al. 2022, MoCo v3).
    """
    if dim % 4:
        raise ValueError(f"sin-cos table needs an embedding size divisible by 4, found {dim}")
    h, w = grid_hw
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

    def one_d(pos: np.ndarray) -> np.ndarray:
        out = np.outer(pos.reshape(-1), omega)  # (h*w, dim/4)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    table = np.concatenate([one_d(xs), one_d(ys)], axis=1)  # (h*w, dim)
    return torch.from_numpy(table).float()


@dataclass
class _Spec:
    kind: Literal["dino", "mae", "timm", "torchvision"]
    arch: str
    stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layer: int | str
    extra: dict[str, Any] = field(default_factory=dict)


class FeatureExtractor(nn.Module):
    """A frozen backbone returning dense features ``(B, D, h, w)``; ``stride``, ``mean``, ``std`` travel with it."""

    def __init__(self, model: nn.Module, spec: _Spec, weights: str | None, weights_hash: str) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.spec = spec
        self.weights = weights
        self.weights_hash = weights_hash
        if spec.kind == "torchvision":
            from torchvision.models.feature_extraction import create_feature_extractor

            self.cut = create_feature_extractor(model, return_nodes={str(spec.layer): "features"})

    @property
    def stride(self) -> int:
        return self.spec.stride

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.spec.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.spec.std

    def describe(self) -> dict[str, Any]:
        """What the manifest and the feature-cache key record about the backbone."""
        return {
            "kind": self.spec.kind,
            "arch": self.spec.arch,
            "stride": self.stride,
            "mean": list(self.mean),
            "std": list(self.std),
            "layer": self.spec.layer,
            "weights": self.weights,
            "weights_hash": self.weights_hash,
            **self.spec.extra,
        }

    def _vit_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        model = self.model
        h, w = x.shape[-2] // self.stride, x.shape[-1] // self.stride
        if self.spec.kind == "mae" and self.spec.extra.get("pos_embed") == "sincos":
            patches = model.patch_embed(x).reshape(x.shape[0], h * w, -1)  # (B, h*w, D)
            patches = patches + sincos_pos_embed_2d(patches.shape[-1], (h, w)).to(patches)
            cls = (model.cls_token + model.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
            tokens = torch.cat([cls, patches], dim=1)
        else:
            tokens = model.prepare_tokens(x)  # (B, 1 + h*w, D), DINO +0.1 positional interpolation
        depth = len(model.blocks)
        for blk in model.blocks[: int(self.spec.layer) % depth + 1]:
            tokens = blk(tokens)
        return model.norm(tokens)[:, model.num_prefix_tokens :], (h, w)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense features ``(B, D, h, w)`` in float32 (the model may run under autocast)."""
        if self.spec.kind in ("dino", "mae"):
            tokens, (h, w) = self._vit_tokens(x)  # (B, h*w, D)
            out = tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        elif self.spec.kind == "timm":
            (out,) = self.model.forward_intermediates(
                x, indices=[int(self.spec.layer)], norm=True, output_fmt="NCHW", intermediates_only=True
            )
        else:
            out = self.cut(x)["features"]
        return out.float()


def _build_model(
    arch: str, patch_size: int | None, weights: str | None, checkpoint_key: str | None, kwargs: dict[str, Any]
) -> tuple[nn.Module, str | None]:
    """Build and load through the one backbone builder; random weights only warn (tests, CI)."""
    spec = BackboneSpec(arch, patch_size=patch_size, weights=weights, checkpoint_key=checkpoint_key, kwargs=kwargs)
    model, _ = build_and_load(spec)
    return model, str(Path(weights).expanduser()) if weights else None


def build_extractor(
    arch: str,
    *,
    patch_size: int | None = 16,
    pretrained_weights: str | None = None,
    checkpoint_key: str | None = "teacher",
    layer: int = -1,
    cnn_stage: str = "layer3",
    mae_pos_embed: Literal["sincos", "interpolate"] = "sincos",
    model_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> FeatureExtractor:
    """Build a :class:`FeatureExtractor` by name (see the module docstring).

    Raises:
        ValueError: unknown arch, or a patch size that contradicts the arch.
        FileNotFoundError / CheckpointError: bad ``pretrained_weights``.
    """
    with seeded(seed):  # random initialisation (tests, CI) is reproducible and leaves the global RNG alone
        return _build(
            arch,
            patch_size,
            pretrained_weights,
            checkpoint_key,
            layer,
            cnn_stage,
            mae_pos_embed,
            dict(model_kwargs or {}),
        )


def _build(
    arch: str,
    patch_size: int | None,
    pretrained_weights: str | None,
    checkpoint_key: str | None,
    layer: int,
    cnn_stage: str,
    mae_pos_embed: Literal["sincos", "interpolate"],
    kwargs: dict[str, Any],
) -> FeatureExtractor:
    if arch in MAE_SIZES:
        patch = MAE_SIZES[arch][3]
        if patch_size not in (None, patch):
            raise ValueError(f"{arch} has patch size {patch}, but patch_size={patch_size}; set patch_size: {patch}")
        model, path = _build_model(arch, None, pretrained_weights, checkpoint_key, kwargs)
        spec = _Spec("mae", arch, patch, IMAGENET_MEAN, IMAGENET_STD, layer, {"pos_embed": mae_pos_embed})
    elif arch.startswith("timm:"):
        kwargs.setdefault("dynamic_img_size", True)
        model, path = _build_model(arch, patch_size, pretrained_weights, checkpoint_key, kwargs)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
        spec = _Spec(
            "timm",
            arch,
            int(model.patch_size),
            mean,
            std,
            layer,
            {"num_prefix_tokens": int(getattr(model, "num_prefix_tokens", 0))},
        )
    elif arch.startswith("vit_"):
        model, path = _build_model(arch, patch_size, pretrained_weights, checkpoint_key, kwargs)
        spec = _Spec(
            "dino", arch, int(model.patch_size), IMAGENET_MEAN, IMAGENET_STD, layer, {"checkpoint_key": checkpoint_key}
        )
    else:
        model, path = _build_model(arch, None, pretrained_weights, checkpoint_key, kwargs)
        spec = _Spec("torchvision", arch, 0, IMAGENET_MEAN, IMAGENET_STD, cnn_stage)
        extractor = FeatureExtractor(model, spec, path, state_dict_hash(model))
        with torch.no_grad():
            probe = extractor(torch.zeros(1, 3, 64, 64))
        spec.stride = 64 // probe.shape[-1]
        return extractor
    return FeatureExtractor(model, spec, path, state_dict_hash(model))
