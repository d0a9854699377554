"""One registry of backbones by name: DINO ViTs, torchvision CNNs and any timm model.

Names:
    ``vit_tiny`` | ``vit_small`` | ``vit_base`` (``patch_size`` 16 by default), or with the patch in the name:
    ``vit_small_patch8``, ``vit_base_patch16``; torchvision classification models by their torchvision name
    (``resnet50``, ``mobilenet_v2``, ...) with the classifier replaced by an identity; ``timm:<model name>``.

Every backbone carries ``embed_dim`` and ``backbone_name``; ViTs also ``patch_size`` and ``num_heads``. Nothing is
downloaded: weights are loaded afterwards from a local file by :func:`dino_lib.models.loading.load_pretrained`.
"""

from __future__ import annotations

import re
from typing import Any

import torch.nn as nn

from dino_lib.models.vit import VIT_SIZES, DinoVisionTransformer

__all__ = ["build_backbone", "available_backbones", "MAE_SIZES"]

_VIT_NAME = re.compile(r"^(vit_tiny|vit_small|vit_base)(?:_patch(\d+))?$")

# MAE encoders (He et al., 2022) as DINO-layout ViTs: name -> (embed_dim, depth, num_heads, patch).
MAE_SIZES: dict[str, tuple[int, int, int, int]] = {
    "mae_vit_base_patch16": (768, 12, 12, 16),
    "mae_vit_large_patch16": (1024, 24, 16, 16),
    "mae_vit_huge_patch14": (1280, 32, 16, 14),
}


def available_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone` (plus any ``timm:<name>`` and torchvision classifier)."""
    names = [f"{v}_patch{p}" for v in VIT_SIZES for p in (8, 16)]
    return (
        list(VIT_SIZES)
        + names
        + list(MAE_SIZES)
        + ["resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2", "timm:<name>"]
    )


def _build_vit(size: str, patch_size: int, **kwargs: Any) -> DinoVisionTransformer:
    embed_dim, depth, heads = VIT_SIZES[size]
    kwargs.setdefault("embed_dim", embed_dim)
    kwargs.setdefault("depth", depth)
    kwargs.setdefault("num_heads", heads)
    model = DinoVisionTransformer(patch_size=patch_size, **kwargs)
    model.backbone_name = f"{size}_patch{patch_size}"
    return model


def _strip_classifier(model: nn.Module, name: str) -> nn.Module:
    """Replace a torchvision classifier (``fc`` or ``classifier``) by an identity and record ``embed_dim``."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        model.embed_dim = model.fc.in_features
        model.fc = nn.Identity()
    elif hasattr(model, "classifier"):
        linears = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"torchvision model {name!r}: no Linear layer found in its classifier")
        model.embed_dim = linears[0].in_features
        model.classifier = nn.Identity()
    else:
        raise ValueError(f"torchvision model {name!r} has neither an 'fc' nor a 'classifier' to remove")
    return model


def build_backbone(name: str, *, patch_size: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a randomly initialised backbone by name (see the module docstring).

    Args:
        name: registry name.
        patch_size: patch size of a ViT; must agree with a patch given in the name.
        **kwargs: passed to the constructor (e.g. ``drop_path_rate``, ``img_size``, ``pos_interpolation`` for
            our ViTs; any ``timm.create_model`` keyword for ``timm:`` names).

    Raises:
        ValueError: unknown name, or contradictory patch sizes.
    """
    match = _VIT_NAME.match(name)
    if match:
        size, named_patch = match.group(1), match.group(2)
        if named_patch is not None and patch_size is not None and int(named_patch) != patch_size:
            raise ValueError(f"backbone {name!r} has patch {named_patch} in its name but patch_size={patch_size}")
        patch = int(named_patch) if named_patch is not None else (patch_size or 16)
        return _build_vit(size, patch, **kwargs)
    if name in MAE_SIZES:
        dim, depth, heads, patch = MAE_SIZES[name]
        if patch_size not in (None, patch):
            raise ValueError(f"{name} has patch size {patch}, but patch_size={patch_size}; set patch_size: {patch}")
        kwargs = {"embed_dim": dim, "depth": depth, "num_heads": heads, **kwargs}
        model = DinoVisionTransformer(patch_size=patch, **kwargs)
        model.backbone_name = name
        return model
    if name.startswith("timm:"):
        import timm

        model_name = name[len("timm:") :]
        kwargs.setdefault("num_classes", 0)
        if patch_size is not None:
            kwargs["patch_size"] = patch_size
        try:
            model = timm.create_model(model_name, pretrained=False, **kwargs)
        except RuntimeError as err:
            raise ValueError(f"timm has no model {model_name!r}: {err}") from None
        model.embed_dim = getattr(model, "embed_dim", None) or model.num_features
        if hasattr(model, "patch_embed"):
            ps = model.patch_embed.patch_size
            model.patch_size = ps[0] if isinstance(ps, tuple) else ps
        model.backbone_name = name
        return model
    import torchvision

    if name in torchvision.models.list_models(module=torchvision.models):
        if patch_size is not None:
            raise ValueError(f"patch_size does not apply to the CNN {name!r}")
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        model = _strip_classifier(model, name)
        model.backbone_name = name
        return model
    raise ValueError(
        f"unknown backbone {name!r}; expected one of {', '.join(available_backbones())} "
        "or any torchvision classification model name"
    )
