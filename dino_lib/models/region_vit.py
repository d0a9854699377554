"""The region ViT of HIPT (``vit4k_xs``): a small ViT over a grid of frozen tile embeddings (Chen et al., 2022).

Input is a ``(B, input_dim, g_h, g_w)`` grid of stage-1 CLS vectors (the layout of
:mod:`dino_lib.hierarchical.tiling`). The grid is flattened row-major to tokens, embedded by a token-wise
``Linear(input_dim -> embed_dim) + GELU`` (``phi``), a CLS token is prepended and a learned positional table sized
for the 14 x 14 global crop is added (bicubic, +0.1 rule, for any other grid). Six pre-norm blocks (6 heads, MLP
ratio 4, qkv bias, LayerNorm eps 1e-6, stochastic depth) and a final LayerNorm give the 192-d CLS output.

State dict: the 78 keys of HIPT's ``vit4k_xs`` (``phi.0.*``, ``cls_token``, ``pos_embed``, ``blocks.i.*``, ``norm.*``),
2,781,504 parameters at the defaults, identical to HIPT's ``vit4k_xs_dino.pth`` teacher and clemsgrs' ``hvit_xs``.

References:
    Chen et al., "Scaling Vision Transformers to Gigapixel Images via Hierarchical Self-Supervised Learning",
    CVPR 2022 (github.com/mahmoodlab/HIPT).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block

from dino_lib.models.loading import CheckpointError, LoadReport, extract_state_dict
from dino_lib.models.pos_embed import PosInterpolation, interpolate_pos_embed
from dino_lib.models.vit import explicit_attention, init_like_reference
from dino_lib.utils.io import safe_torch_load

__all__ = ["RegionViT", "REGION_VIT_SIZES", "build_region_vit", "load_region_vit"]

log = logging.getLogger(__name__)

# name -> constructor defaults; "vit4k_xs" is the published HIPT model
REGION_VIT_SIZES: dict[str, dict[str, Any]] = {
    "vit4k_xs": {"input_dim": 384, "embed_dim": 192, "depth": 6, "num_heads": 6},
    "region_vit_xs": {"input_dim": 384, "embed_dim": 192, "depth": 6, "num_heads": 6},
    "hvit_xs": {"input_dim": 384, "embed_dim": 192, "depth": 6, "num_heads": 6},
}


class RegionViT(nn.Module):
    """ViT over a token grid (``vit4k_xs`` equivalent).

    Args:
        input_dim: width of the tile embeddings (384 for ViT-S/16; 768/1024 for other tile encoders).
        embed_dim: transformer width (192).
        depth: number of blocks (6).
        num_heads: attention heads (6).
        mlp_ratio: MLP hidden width / embed_dim (4).
        drop_path_rate: stochastic depth of the last block, linear from 0 (0.1 student, 0 teacher).
        pos_grid: side of the stored positional table (14 = the reference global crop; ``int(0.875 * g)``).
        pos_interpolation: ``"dino"`` (+0.1 scale-factor rule, reference) or ``"size"`` / ``"timm"``.
    """

    def __init__(
        self,
        *,
        input_dim: int = 384,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        pos_grid: int = 14,
        pos_interpolation: PosInterpolation = "dino",
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.pos_grid = pos_grid
        self.pos_interpolation: PosInterpolation = pos_interpolation
        self.num_prefix_tokens = 1
        self.patch_size = 1  # one token per grid cell: no patchification
        self.phi = nn.Sequential(nn.Linear(input_dim, embed_dim), nn.GELU(), nn.Dropout(0.0))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=True,
                drop_path=rate,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                act_layer=nn.GELU,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Identity()  # replaced by MultiCropWrapper; never called in forward (as the reference)
        self.backbone_name = "vit4k_xs"
        init_like_reference(self)  # the same initialisation as the DINO ViT, as HIPT does

    def interpolate_pos_encoding(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        """Positional table ``(1, 1 + g_h * g_w, D)`` for a grid; unchanged for a square ``pos_grid`` grid."""
        return interpolate_pos_embed(self.pos_embed, grid_hw, num_prefix_tokens=1, mode=self.pos_interpolation)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, input_dim, g_h, g_w)`` grid -> ``(B, 1 + g_h * g_w, D)`` tokens (row-major)."""
        if x.ndim != 4 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"region ViT expects a (B, {self.input_dim}, g_h, g_w) grid of tile embeddings, found "
                f"{tuple(x.shape)}; check the feature dimension D of the region tensors (input_dim)"
            )
        b, _, gh, gw = x.shape
        tokens = self.phi(x.flatten(2).transpose(1, 2))  # (B, g_h*g_w, D)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)  # (B, 1 + N, D)
        return tokens + self.interpolate_pos_encoding((gh, gw))

    @staticmethod
    def key_padding_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """``(B, g_h, g_w)`` bool mask (True = tissue, keep) -> additive attention bias ``(B, 1, 1, 1 + N)``.

        Masked keys get ``-inf`` so no token attends to background tiles; the CLS key is always kept, so no
        attention row is empty.
        """
        if mask is None:
            return None
        keep = mask.flatten(1).bool()  # (B, N)
        keep = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)  # (B, 1 + N)
        bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, float("-inf"))
        return bias[:, None, None, :]

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """All tokens after the final LayerNorm, ``(B, 1 + N, D)``; ``mask`` as :meth:`key_padding_bias`."""
        x = self.prepare_tokens(x)
        bias = self.key_padding_bias(mask, x.dtype)
        for blk in self.blocks:
            x = blk(x, attn_mask=bias)
        return self.norm(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final-normed CLS ``(B, embed_dim)``."""
        return self.forward_features(x, mask)[:, 0]

    def get_intermediate_layers(self, x: torch.Tensor, n: int = 1) -> list[torch.Tensor]:
        """Outputs of the last ``n`` blocks through the final LayerNorm, oldest first; each ``(B, 1 + N, D)``."""
        x = self.prepare_tokens(x)
        out = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i >= len(self.blocks) - n:
                out.append(self.norm(x))
        return out

    def get_selfattention(self, x: torch.Tensor, block: int = -1, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Softmax attention ``(B, heads, 1 + N, 1 + N)`` of one block (fp32), computed on LN1 of its input."""
        index = block % len(self.blocks)
        x = self.prepare_tokens(x)
        bias = self.key_padding_bias(mask, x.dtype)
        for blk in self.blocks[:index]:
            x = blk(x, attn_mask=bias)
        target = self.blocks[index]
        attn = explicit_attention(target.attn, target.norm1(x))
        if bias is not None:  # recompute the softmax with background keys removed
            attn = (attn.log() + bias.float()).softmax(dim=-1)
        return attn

    def get_last_selfattention(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last-block attention ``(B, heads, 1 + N, 1 + N)`` (the reference API)."""
        return self.get_selfattention(x, block=-1, mask=mask)


def build_region_vit(name: str = "vit4k_xs", **kwargs: Any) -> RegionViT:
    """Build a randomly initialised region ViT; keyword arguments override the named size (e.g. ``depth=2``)."""
    if name not in REGION_VIT_SIZES:
        raise ValueError(f"unknown region ViT {name!r}; expected one of {', '.join(REGION_VIT_SIZES)}")
    model = RegionViT(**{**REGION_VIT_SIZES[name], **kwargs})
    model.backbone_name = name
    return model


def load_region_vit(
    model: RegionViT, path: str | Path, *, checkpoint_key: str | None = "teacher", strict: bool = True
) -> LoadReport:
    """Load region-ViT weights **by key** from a backbone file or a full DINO checkpoint.

    ``module.`` / ``backbone.`` prefixes are stripped and ``head.*`` keys ignored. A positional table of another
    grid is resized with the +0.1 bicubic rule and logged (never replaced by a random table).

    Raises:
        CheckpointError: missing or unexpected keys (strict), or shapes of another architecture.
    """
    path = Path(path)
    state, source = extract_state_dict(safe_torch_load(path), checkpoint_key, str(path))
    ignored = sorted(k for k in state if k.startswith(("head.", "last_layer.")))
    state = {k: v for k, v in state.items() if k not in ignored}
    own = model.state_dict()
    resampled = []
    for key, value in list(state.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        if key == "pos_embed" and value.shape[-1] == own[key].shape[-1]:
            side = model.pos_grid
            state[key] = interpolate_pos_embed(value, (side, side), num_prefix_tokens=1, mode="dino")
            log.warning("%s: resized pos_embed %s -> %s (+0.1 bicubic rule)", path, tuple(value.shape), own[key].shape)
            resampled.append(key)
            continue
        raise CheckpointError(
            f"{path}: tensor {key!r} has shape {tuple(value.shape)} in the checkpoint but {tuple(own[key].shape)} in "
            "the model; build the region ViT with the checkpoint's input_dim/embed_dim/depth"
        )
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: does not match the region ViT: missing {missing[:10]} ({len(missing)}), unexpected "
            f"{unexpected[:10]} ({len(unexpected)}); check checkpoint_key ({checkpoint_key!r}) and the model size"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return LoadReport(str(path), source, len(own) - len(missing), missing, unexpected, ignored, resampled)
