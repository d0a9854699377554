"""One backbone description and one function that builds and loads any backbone.

Every task names its backbone with the reference's keys: ``arch``, ``patch_size``, ``pretrained_weights``,
``checkpoint_key`` (plus model keywords such as ``depth``). :class:`BackboneSpec` holds them and
:func:`build_and_load` turns them into a model for training, feature extraction, evaluation, propagation,
attention maps and the HIPT stage-1 encoder:

* ``arch`` is a registry name of :func:`dino_lib.models.build_backbone` (DINO ViTs, MAE encoders, torchvision CNNs,
  ``timm:<name>``), or ``auto``: the ViT is read from the checkpoint's tensor shapes (:func:`infer_architecture`,
  the one place that does so), so an evaluation can follow whatever a pretraining run produced.
* ``pretrained_weights`` is a local file (never downloaded); a missing file is an error; ``None`` keeps random
  weights and warns, which is only useful for smoke tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from dino_lib.models.backbones import MAE_SIZES, build_backbone
from dino_lib.models.loading import LoadReport, extract_state_dict, load_pretrained
from dino_lib.models.vit import VIT_SIZES
from dino_lib.runtime import seeded
from dino_lib.utils.io import safe_torch_load

logger = logging.getLogger(__name__)

__all__ = ["BackboneSpec", "build_and_load", "infer_architecture", "infer_vit_kwargs", "infer_vit_spec"]

_WIDTH_TO_ARCH = {dims[0]: name for name, dims in VIT_SIZES.items()}
_VIT_NAME = re.compile(r"^vit_(tiny|small|base)(_patch\d+)?$")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What a task says about its backbone, in the reference's key names.

    Attributes:
        arch: registry name (``vit_small``, ``vit_base_patch8``, ``mae_vit_base_patch16``, ``resnet50``,
            ``timm:<name>``) or ``auto`` (read from ``weights``).
        patch_size: ViT patch size; ``None`` keeps the architecture's own (a patch in the name wins).
        weights: local checkpoint file (``pretrained_weights``) or ``None`` for random weights.
        checkpoint_key: ``teacher`` / ``student`` in a DINO training checkpoint (MAE files use ``model``).
        kwargs: constructor keywords (``depth``, ``drop_path_rate``, ``img_size``, ``dynamic_img_size``, ...).
    """

    arch: str
    patch_size: int | None = 16
    weights: str | Path | None = None
    checkpoint_key: str | None = "teacher"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any, **kwargs: Any) -> BackboneSpec:
        """A spec from any config with the reference keys (``arch``, ``patch_size``, ``pretrained_weights``,
        ``checkpoint_key``, optional ``depth``); ``kwargs`` add constructor keywords."""
        extra = {"depth": cfg.depth} if getattr(cfg, "depth", None) is not None else {}
        return cls(
            arch=cfg.arch,
            patch_size=getattr(cfg, "patch_size", None),
            weights=getattr(cfg, "pretrained_weights", None) or None,
            checkpoint_key=getattr(cfg, "checkpoint_key", "teacher"),
            kwargs={**extra, **kwargs},
        )


def infer_vit_kwargs(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """ViT size from a backbone state dict: width, depth, patch size, positional grid (heads = width / 64)."""
    if "patch_embed.proj.weight" not in state or "pos_embed" not in state:
        raise ValueError("cannot infer the architecture: the weights are not a ViT (no patch_embed/pos_embed)")
    dim, _, patch, _ = state["patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    side = math.isqrt(state["pos_embed"].shape[1] - 1)
    return {
        "embed_dim": int(dim),
        "depth": depth,
        "num_heads": max(1, int(dim) // 64),
        "patch_size": int(patch),
        "img_size": side * int(patch),
    }


def _recorded_heads(weights: Path, embed_dim: int) -> int | None:
    """Head count from the training run's ``config.yaml`` beside the weights (heads are not in tensor shapes)."""
    import yaml

    config = weights.parent / "config.yaml"
    if not config.is_file():
        return None
    data = yaml.safe_load(config.read_text()) or {}
    for scope in (data, data.get("model") or {}, data.get("backbone_kwargs") or {}, data.get("arch_kwargs") or {}):
        if isinstance(scope, dict) and isinstance(scope.get("num_heads"), int):
            return scope["num_heads"]
    arch = str(data.get("arch", "")).split("_patch")[0]
    if arch in VIT_SIZES and VIT_SIZES[arch][0] == embed_dim:
        return VIT_SIZES[arch][2]
    return None


def infer_architecture(weights: str | Path, checkpoint_key: str | None = "teacher") -> tuple[str, dict[str, Any]]:
    """``(arch, kwargs)`` of the DINO ViT whose weights are in ``weights``: a standard size name when the width is
    one (tiny 192, small 384, base 768), with depth, patch size, positional grid and heads as keywords."""
    path = Path(weights)
    state, _ = extract_state_dict(safe_torch_load(path), checkpoint_key, str(path))
    kwargs = infer_vit_kwargs(state)
    kwargs["num_heads"] = _recorded_heads(path, kwargs["embed_dim"]) or kwargs["num_heads"]
    return _WIDTH_TO_ARCH.get(kwargs["embed_dim"], "vit_small"), kwargs


def infer_vit_spec(path: str | Path, checkpoint_key: str = "teacher") -> dict[str, int | str]:
    """``{"arch", "patch_size", "depth"}`` of the standard-width ViT whose weights are in ``path``."""
    arch, kwargs = infer_architecture(path, checkpoint_key)
    if kwargs["embed_dim"] not in _WIDTH_TO_ARCH:
        raise ValueError(
            f"{path}: embedding width {kwargs['embed_dim']} is not one of {sorted(_WIDTH_TO_ARCH)}; set arch explicitly"
        )
    return {"arch": arch, "patch_size": kwargs["patch_size"], "depth": kwargs["depth"]}


def _patch_argument(arch: str, patch_size: int | None) -> int | None:
    """The ``patch_size`` to pass to :func:`build_backbone`: none for CNNs, MAE names and ViT names with a patch."""
    if arch.startswith("timm:"):
        return patch_size
    if _VIT_NAME.match(arch) and "_patch" not in arch:
        return patch_size
    return None


def _auto_architecture(
    weights: Path | None, checkpoint_key: str | None, kwargs: dict[str, Any]
) -> tuple[str, int | None, dict[str, Any]]:
    """``arch: auto``: the architecture, patch size and sizes stored in the checkpoint, over explicit sizes."""
    if weights is None:
        raise ValueError("arch: auto reads the architecture from pretrained_weights; give a checkpoint or an arch")
    arch, inferred = infer_architecture(weights, checkpoint_key)
    patch_size = inferred.pop("patch_size")
    overridden = {k: kwargs[k] for k in inferred if k in kwargs and kwargs[k] != inferred[k]}
    if overridden:  # the file decides the architecture; other keywords (drop_path_rate, ...) still apply
        logger.info("arch auto: %s ignored, the checkpoint holds %s", overridden, {k: inferred[k] for k in overridden})
    kwargs = {**kwargs, **inferred}
    logger.info("arch auto -> %s, patch %d, depth %d", arch, patch_size, kwargs["depth"])
    if "_patch" not in arch:
        arch = f"{arch}_patch{patch_size}"
    return arch, patch_size, kwargs


def build_and_load(
    spec: BackboneSpec,
    *,
    strict: bool = True,
    freeze: bool = False,
    seed: int | None = None,
    warn_random: bool = True,
) -> tuple[nn.Module, LoadReport | None]:
    """Build ``spec.arch`` and load ``spec.weights`` into it.

    Args:
        spec: the backbone description.
        strict: passed to :func:`load_pretrained` (every model tensor must be found).
        freeze: no gradients and eval mode (frozen feature extractors).
        seed: seed the random initialisation without touching the global RNG (reproducible random backbones).
        warn_random: warn when no weights are given.

    Raises:
        FileNotFoundError: ``spec.weights`` names a file that does not exist (nothing is downloaded).
        ValueError: ``arch: auto`` without weights, or an unknown architecture.
        CheckpointError: the file does not fit the architecture (missing/unexpected keys are listed).
    """
    weights = Path(spec.weights).expanduser() if spec.weights else None
    if weights is not None and not weights.is_file():
        raise FileNotFoundError(
            f"pretrained_weights: {weights} not found; give a local checkpoint (nothing is downloaded) "
            "or null for random weights"
        )
    arch, patch_size, kwargs = spec.arch, spec.patch_size, dict(spec.kwargs)
    if arch == "auto":
        arch, patch_size, kwargs = _auto_architecture(weights, spec.checkpoint_key, kwargs)
    with seeded(seed) if seed is not None else contextlib.nullcontext():
        model = build_backbone(arch, patch_size=_patch_argument(arch, patch_size), **kwargs)
    report = None
    if weights is None:
        if warn_random:
            warnings.warn(
                f"no pretrained_weights given: {arch} has RANDOM weights (smoke tests only; its features, attention "
                "maps and predictions are not meaningful)",
                UserWarning,
                stacklevel=2,
            )
    else:
        key = spec.checkpoint_key
        if arch in MAE_SIZES and key in ("teacher", "student"):
            key = "model"  # MAE checkpoints keep the encoder under "model"
        report = load_pretrained(model, weights, checkpoint_key=key, strict=strict)
        logger.info("%s: %s", arch, report)
    if freeze:
        model.requires_grad_(False)
        model.eval()
    return model, report
