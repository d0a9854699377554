"""DINO projection head (Caron et al., 2021, arXiv 2104.14294).

MLP ``D -> 2048 -> 2048 -> 256`` (GELU, optional BatchNorm), L2-normalisation of the 256-d bottleneck, then a
weight-normalised ``Linear(256 -> K)`` without bias. The weight norm uses PyTorch's parametrisation API (the legacy
``weight_norm`` utility is deprecated), but the state dict always carries the reference key names
``last_layer.weight_g`` / ``last_layer.weight_v``, and both spellings are accepted when loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DINOHead", "legacy_to_parametrized_keys", "parametrized_to_legacy_keys"]

_MODERN_G = "last_layer.parametrizations.weight.original0"
_MODERN_V = "last_layer.parametrizations.weight.original1"
_LEGACY_G = "last_layer.weight_g"
_LEGACY_V = "last_layer.weight_v"


def parametrized_to_legacy_keys(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Rename ``<prefix>last_layer.parametrizations.weight.original{0,1}`` to ``<prefix>last_layer.weight_{g,v}``."""
    ren = {prefix + _MODERN_G: prefix + _LEGACY_G, prefix + _MODERN_V: prefix + _LEGACY_V}
    return {ren.get(k, k): v for k, v in state.items()}


def legacy_to_parametrized_keys(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Inverse of :func:`parametrized_to_legacy_keys`."""
    ren = {prefix + _LEGACY_G: prefix + _MODERN_G, prefix + _LEGACY_V: prefix + _MODERN_V}
    return {ren.get(k, k): v for k, v in state.items()}


def _trunc_normal_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DINOHead(nn.Module):
    """Projection head producing the K "prototype" logits of DINO.

    Args:
        in_dim: backbone embedding size D.
        out_dim: K, number of prototypes (65536 in the paper).
        use_bn: BatchNorm after each hidden Linear.
        norm_last_layer: freeze the weight-norm magnitude ``g`` at 1 (logits are then cosines in [-1, 1]).
        nlayers: MLP depth (1 = a single Linear to the bottleneck).
        hidden_dim: hidden width (2048).
        bottleneck_dim: bottleneck width (256).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        use_bn: bool = False,
        norm_last_layer: bool = True,
        nlayers: int = 3,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
    ) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            for _ in range(nlayers - 2):
                layers.append(nn.Linear(hidden_dim, hidden_dim))
                if use_bn:
                    layers.append(nn.BatchNorm1d(hidden_dim))
                layers.append(nn.GELU())
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.mlp.apply(_trunc_normal_init)
        # The weight norm is attached after the init above, so v keeps PyTorch's default Linear init (as the reference).
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False), dim=0)
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad = False
        self.out_dim = out_dim
        self.register_state_dict_post_hook(_to_legacy_hook)
        self.register_load_state_dict_pre_hook(_from_legacy_hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)  # (N, bottleneck)
        x = F.normalize(x, dim=-1, p=2, eps=1e-12)
        return self.last_layer(x)  # (N, K)


def _to_legacy_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for modern, legacy in ((_MODERN_G, _LEGACY_G), (_MODERN_V, _LEGACY_V)):
        if prefix + modern in state_dict:
            # Rebuild the ordered dict entry in place so the key order stays stable.
            state_dict[prefix + legacy] = state_dict.pop(prefix + modern)


def _from_legacy_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for modern, legacy in ((_MODERN_G, _LEGACY_G), (_MODERN_V, _LEGACY_V)):
        if prefix + legacy in state_dict:
            state_dict[prefix + modern] = state_dict.pop(prefix + legacy)
