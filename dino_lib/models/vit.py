"""DINO Vision Transformers (tiny/small/base, patch 8/16) on top of timm's ``VisionTransformer``.

State-dict compatible with the released DINO backbones (150 keys): ``cls_token``,
``pos_embed``, ``patch_embed.proj.*``, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``, ``norm.*``.
Pre-norm blocks, LayerNorm eps 1e-6, exact GELU, qkv bias, stochastic depth linearly spaced from 0,
the reference initialisation and the reference positional interpolation.

Attention runs through fused SDPA (timm's ``fused_attn``); :func:`explicit_attention` recomputes the softmax
weights of one block only when they are asked for (style rule 7), so maps never slow the normal path. One exception,
:class:`DinoAttention`: on the CPU in bf16 and for short sequences it takes timm's explicit path (matmul, softmax,
matmul), which runs forward + backward about twice as fast as the CPU flash kernel there; fp32 is unchanged.

References:
    Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021.
    Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.layers import Attention
from timm.models import checkpoint_seq
from timm.models.vision_transformer import VisionTransformer

from dino_lib.models.pos_embed import PosInterpolation, interpolate_pos_embed
from dino_lib.runtime import autocast_disabled

__all__ = ["DinoVisionTransformer", "DinoAttention", "VIT_SIZES", "explicit_attention", "init_like_reference"]

# name -> (embed_dim, depth, num_heads), as the released DINO models
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
}


def explicit_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention weights ``(B, heads, T, T)`` of a timm ``Attention`` module on its input ``x`` (B, T, D).

    Same arithmetic as the module's non-fused path (qkv, optional q/k norm, scale, softmax), computed in fp32.
    """
    b, t, _ = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b, t, 3, heads, -1).permute(2, 0, 3, 1, 4)  # (3, B, heads, T, hd)
    q, k, _ = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    # Autocast would run the product in bf16 again despite the casts; maps are always fp32.
    with autocast_disabled(x.device.type):
        logits = (q.float() * attn.scale) @ k.float().transpose(-2, -1)  # (B, heads, T, T)
        return logits.softmax(dim=-1)


# Longest sequence for which bf16 CPU attention takes the explicit path. Measured on 2 AVX-512 cores (vit_small,
# 6 heads of 64, forward + backward): explicit ~2x faster than the flash kernel at 37 and 197 tokens, still ~1.5x at
# 785; the explicit path materialises (B, heads, T, T), so longer sequences stay on the flash kernel (memory).
EXPLICIT_BF16_MAX_TOKENS = 1024


def _cpu_bf16(x: torch.Tensor) -> bool:
    """Whether ``x`` is on the CPU and the attention products would run in bf16 (bf16 input or bf16 autocast)."""
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def init_like_reference(model: nn.Module) -> None:
    """DINO's initialisation: trunc-normal(0.02) for ``pos_embed``, ``cls_token`` and Linear weights, zero biases,
    LayerNorm (1, 0); other layers (the patch Conv2d) keep PyTorch's default initialisation."""
    nn.init.trunc_normal_(model.pos_embed, std=0.02)
    nn.init.trunc_normal_(model.cls_token, std=0.02)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DinoAttention(Attention):
    """timm ``Attention`` that picks the faster kernel per call on the CPU in bf16 (same parameters, same API).

    The CPU flash-attention kernel pays a large fixed cost per (batch, head) in its backward; for the short
    sequences of DINO crops (37 tokens at 96 px, 197 at 224 px, patch 16) two bf16 matmuls around a softmax are
    about twice as fast over forward + backward. Everything else (fp32, CUDA, masks, long sequences, and the
    ``fused_attn = False`` switch the attention-map hooks use) goes through timm's forward unchanged.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        b, n, _ = x.shape
        simple = self.gate is None and attn_mask is None and not is_causal
        if not (self.fused_attn and simple and n <= EXPLICIT_BF16_MAX_TOKENS and _cpu_bf16(x)):
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, hd)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, T, T)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.attn_dim)
        x = self.norm(x)
        return self.proj_drop(self.proj(x))


class DinoVisionTransformer(VisionTransformer):
    """A timm ViT that keeps the DINO reference behaviour: CLS output, +0.1 interpolation, DINO APIs.

    Args:
        patch_size: 8 or 16 (any positive size works).
        embed_dim, depth, num_heads: transformer size.
        img_size: size of the stored positional table (224 in every released model).
        drop_path_rate: stochastic depth of the last block (0 for teachers).
        pos_interpolation: ``"dino"`` (reference), ``"size"`` or ``"timm"``; see :mod:`dino_lib.models.pos_embed`.
        in_chans: input channels.
    """

    def __init__(
        self,
        *,
        patch_size: int = 16,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        img_size: int = 224,
        drop_path_rate: float = 0.0,
        pos_interpolation: PosInterpolation = "dino",
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            global_pool="token",
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            act_layer=nn.GELU,
            weight_init="skip",
            attn_layer=DinoAttention,
        )
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.pos_interpolation: PosInterpolation = pos_interpolation
        init_like_reference(self)

    def interpolate_pos_encoding(self, grid_hw: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
        """The positional table for a ``grid_hw`` patch grid of an ``image_hw`` image."""
        return interpolate_pos_embed(
            self.pos_embed,
            grid_hw,
            image_hw=image_hw,
            num_prefix_tokens=self.num_prefix_tokens,
            mode=self.pos_interpolation,
        )

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch-embed, prepend CLS, add the (interpolated) positional table: ``(B, 3, H, W) -> (B, 1 + h*w, D)``."""
        image_hw = (x.shape[-2], x.shape[-1])
        # The reference's strided convolution silently drops a remainder of the sides; timm's
        # PatchEmbed asserts divisibility instead, so crop to whole patches first (identical result).
        ph, pw = self.patch_embed.patch_size
        x = x[..., : (image_hw[0] // ph) * ph, : (image_hw[1] // pw) * pw]
        x = self.patch_embed(x)  # (B, h, w, D)
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)  # row-major: row = image y
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)  # (B, 1 + h*w, D)
        x = x + self.interpolate_pos_encoding((h, w), image_hw)
        return self.pos_drop(x)

    def forward_features(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """All tokens after the final LayerNorm, ``(B, 1 + h*w, D)``."""
        x = self.prepare_tokens(x)
        if attn_mask is None and self.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint_seq(self.blocks, x)  # set_grad_checkpointing(): activations recomputed in the backward
        elif attn_mask is None:
            x = self.blocks(x)
        else:
            for blk in self.blocks:
                x = blk(x, attn_mask=attn_mask)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The final-normed CLS feature ``(B, D)``; the (identity) classifier head is never called."""
        return self.forward_features(x)[:, 0]

    def get_intermediate_layers(self, x: torch.Tensor, n: int = 1) -> list[torch.Tensor]:  # type: ignore[override]
        """Outputs of the last ``n`` blocks, each through the final LayerNorm, oldest first; each ``(B, T, D)``."""
        x = self.prepare_tokens(x)
        outputs = []
        depth = len(self.blocks)
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i >= depth - n:
                outputs.append(self.norm(x))
        return outputs

    def get_selfattention(self, x: torch.Tensor, block: int = -1) -> torch.Tensor:
        """Softmax attention ``(B, heads, T, T)`` of block ``block`` (negative counts from the end).

        Blocks before it run on the fused path; only the requested block's weights are computed explicitly, on
        LN1 of that block's input, as the reference ``get_last_selfattention``.
        """
        depth = len(self.blocks)
        index = block % depth
        x = self.prepare_tokens(x)
        for blk in self.blocks[:index]:
            x = blk(x)
        target = self.blocks[index]
        return explicit_attention(target.attn, target.norm1(x))

    def get_last_selfattention(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax attention of the last block, ``(B, heads, T, T)`` (the reference API)."""
        return self.get_selfattention(x, block=-1)
