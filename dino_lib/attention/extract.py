"""CLS-to-patch (or patch-to-patch) self-attention maps of any block of a ViT.

The reference quantity: block l's softmax attention ``softmax(q kᵀ · d^-1/2)`` computed on LN1 of the block's input,
row of the query token, patch columns only, reshaped row-major to the ``(h, w)`` grid. The forward pass runs the
model's normal (fused SDPA) path for every block; only the requested blocks' weights are recomputed explicitly and
only for the requested query rows, so a CLS map costs O(T) extra memory instead of the O(T²) probability matrix.

Works for :class:`~dino_lib.models.DinoVisionTransformer` (``prepare_tokens``) and timm ``VisionTransformer``
models (``patch_embed`` → ``_pos_embed`` → ``patch_drop`` → ``norm_pre``), including register tokens: all
``num_prefix_tokens`` prefix columns are excluded from the map and their mass is returned separately.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence

import torch
import torch.nn as nn

from dino_lib.models.vit import explicit_attention
from dino_lib.runtime import autocast

__all__ = ["AttentionMaps", "attention_maps", "selfattention", "vit_tokens", "num_prefix_tokens", "autocast_context"]

logger = logging.getLogger(__name__)

Query = str | tuple[int, int]  # "cls" | "mean" | (row, col) of a patch


@dataclasses.dataclass
class AttentionMaps:
    """Result of :func:`attention_maps`.

    Attributes:
        maps: ``(B, L, heads, h, w)`` fp32 attention probabilities of the query over the patch keys.
        prefix_mass: ``(B, L, heads, n_prefix)`` probability on the prefix keys (CLS, then registers).
        layers: the block indices (non-negative) in the order of axis L.
        heads: the head indices in the order of the heads axis.
        grid_hw: the patch grid.
        query: the query that produced the maps.
    """

    maps: torch.Tensor
    prefix_mass: torch.Tensor
    layers: list[int]
    heads: list[int]
    grid_hw: tuple[int, int]
    query: Query


def num_prefix_tokens(model: nn.Module) -> int:
    """CLS + register (+ distillation) tokens in front of the patch tokens."""
    return int(getattr(model, "num_prefix_tokens", 1))


def _check_vit(model: nn.Module) -> None:
    if not hasattr(model, "blocks") or not (hasattr(model, "prepare_tokens") or hasattr(model, "patch_embed")):
        name = getattr(model, "backbone_name", type(model).__name__)
        raise TypeError(
            f"attention maps need a Vision Transformer with 'blocks' and a patch embedding; got {name}. "
            "Use a ViT backbone (vit_tiny/vit_small/vit_base or timm:vit_*)."
        )
    if hasattr(model, "blocks") and len(model.blocks) and not hasattr(model.blocks[0], "attn"):
        raise TypeError(f"blocks of {type(model).__name__} have no 'attn' module; cannot compute attention")


def vit_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Token sequence entering block 0: ``(B, 3, H, W) -> (B, n_prefix + h*w, D)``."""
    if hasattr(model, "prepare_tokens"):
        return model.prepare_tokens(x)
    # timm VisionTransformer: the same steps as its forward_features before the blocks
    ps = model.patch_embed.patch_size
    ph, pw = (ps, ps) if isinstance(ps, int) else ps
    x = x[..., : (x.shape[-2] // ph) * ph, : (x.shape[-1] // pw) * pw]
    x = model.patch_embed(x)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    return model.norm_pre(x)


def _grid(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    ps = getattr(model, "patch_size", None) or model.patch_embed.patch_size
    ph, pw = (ps, ps) if isinstance(ps, int) else ps
    return x.shape[-2] // ph, x.shape[-1] // pw


def _resolve_layers(layers: Sequence[int], depth: int) -> list[int]:
    out = []
    for layer in layers:
        if not -depth <= layer < depth:
            raise IndexError(f"layer {layer} out of range for a ViT with {depth} blocks (use 0..{depth - 1} or -1)")
        out.append(layer % depth)
    return out


def autocast_context(x: torch.Tensor, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on the input's device, or a no-op for fp32/None (via :func:`dino_lib.runtime.autocast`)."""
    names = {None: "fp32", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    if dtype not in names:
        raise ValueError(f"dtype: expected one of float32, bfloat16, float16 or None, found {dtype}")
    return autocast(x.device, names[dtype])


def _query_rows_attention(attn: nn.Module, x: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
    """Softmax attention of the query rows ``rows`` over all keys: ``(B, heads, Q, T)`` fp32.

    Same arithmetic as :func:`dino_lib.models.vit.explicit_attention` restricted to some query rows (a row of a
    softmax only depends on its own logits), so the full ``(T, T)`` matrix is never built.
    """
    b, t, _ = x.shape
    qkv = attn.qkv(x).reshape(b, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)  # (3, B, heads, T, hd)
    q, k, _ = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    q = q[:, :, rows]  # (B, heads, Q, hd)
    logits = (q.float() * attn.scale) @ k.float().transpose(-2, -1)  # (B, heads, Q, T)
    return logits.softmax(dim=-1)


def _patch_query_attention(attn: nn.Module, x: torch.Tensor, n_prefix: int, chunk: int) -> torch.Tensor:
    """Mean over patch queries of their attention rows, chunked over queries to bound memory: ``(B, heads, T)``."""
    t = x.shape[1]
    total = None
    for start in range(n_prefix, t, chunk):
        part = _query_rows_attention(attn, x, slice(start, min(start + chunk, t))).sum(dim=2)  # (B, heads, T)
        total = part if total is None else total + part
    return total / (t - n_prefix)


def _query_slice(model: nn.Module, query: Query, n_prefix: int, grid_hw: tuple[int, int]) -> slice:
    """The token rows of ``query``: the CLS row, every row (``"mean"``) or one patch's row."""
    h, w = grid_hw
    if query == "cls":
        if n_prefix < 1 or getattr(model, "cls_token", True) is None:
            raise ValueError("query='cls' needs a model with a class token; use query='mean' or a (row, col) patch")
        return slice(0, 1)
    if query == "mean":
        return slice(None)
    if isinstance(query, tuple | list) and len(query) == 2:
        r, c = int(query[0]), int(query[1])
        if not (0 <= r < h and 0 <= c < w):
            raise IndexError(f"query patch {(r, c)} outside the {h}x{w} grid")
        idx = n_prefix + r * w + c
        return slice(idx, idx + 1)
    raise ValueError(f"query must be 'cls', 'mean' or (row, col), got {query!r}")


def _captured_rows(
    model: nn.Module, images: torch.Tensor, wanted: list[int], rows: slice, n_prefix: int, *,
    mean: bool, chunk: int, dtype: torch.dtype | None,
) -> torch.Tensor:  # fmt: skip
    """One forward pass up to the last wanted block; the query's attention row of each wanted block.

    Returns ``(B, L, heads, T)`` fp32 (``mean``: the mean over patch query rows, chunked).
    """
    captured: dict[int, torch.Tensor] = {}
    with autocast_context(images, dtype):
        x = vit_tokens(model, images)  # (B, n_prefix + h*w, D)
        for i, blk in enumerate(model.blocks[: max(wanted) + 1]):
            if i in wanted:
                xn = blk.norm1(x)
                if mean:
                    captured[i] = _patch_query_attention(blk.attn, xn, n_prefix, chunk)  # (B, heads, T)
                else:
                    captured[i] = _query_rows_attention(blk.attn, xn, rows)[:, :, 0]  # (B, heads, T)
            if i < max(wanted):
                x = blk(x)
    return torch.stack([captured[i] for i in wanted], dim=1).float()  # (B, L, heads, T)


@torch.no_grad()
def attention_maps(
    model: nn.Module,
    images: torch.Tensor,
    *,
    layers: Sequence[int] = (-1,),
    query: Query = "cls",
    heads: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    query_chunk: int = 256,
) -> AttentionMaps:
    """Attention maps of one batch of same-size images.

    Args:
        model: a DINO or timm ViT (any number of prefix/register tokens).
        images: ``(B, 3, H, W)`` normalised; sides not divisible by p lose the remainder (pre-process with
            :func:`dino_lib.attention.preprocess.preprocess` to control that).
        layers: block indices (negative count from the end); all are taken in one forward pass.
        query: ``"cls"`` (the reference), ``"mean"`` (mean over patch queries) or ``(row, col)`` of a patch.
        heads: head indices to keep (default all).
        dtype: autocast dtype for the forward (``torch.bfloat16``); probabilities are always computed in fp32.
        query_chunk: query rows per chunk for ``query="mean"`` (memory ∝ heads × chunk × T).

    Returns:
        :class:`AttentionMaps` with ``maps`` of shape ``(B, L, heads, h, w)``.
    """
    _check_vit(model)
    if images.ndim != 4:
        raise ValueError(f"images must be a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
    depth = len(model.blocks)
    wanted = _resolve_layers(layers, depth)
    n_prefix = num_prefix_tokens(model)
    h, w = _grid(model, images)
    rows = _query_slice(model, query, n_prefix, (h, w))
    mean = query == "mean"
    stacked = _captured_rows(model, images, wanted, rows, n_prefix, mean=mean, chunk=query_chunk, dtype=dtype)
    if stacked.shape[-1] != n_prefix + h * w:
        raise RuntimeError(
            f"token count {stacked.shape[-1]} != {n_prefix} prefix + {h}x{w} patches; the model's patch grid "
            "does not match its patch_size"
        )
    head_idx = list(range(stacked.shape[2])) if heads is None else [int(j) for j in heads]
    stacked = stacked[:, :, head_idx]
    maps = stacked[..., n_prefix:].reshape(*stacked.shape[:3], h, w)  # (B, L, heads, h, w), row-major grid
    return AttentionMaps(maps, stacked[..., :n_prefix], wanted, head_idx, (h, w), query)


@torch.no_grad()
def selfattention(
    model: nn.Module, images: torch.Tensor, layer: int = -1, *, budget_mb: float = 1024.0
) -> torch.Tensor:
    """Full softmax attention ``(B, heads, T, T)`` of one block (the reference ``get_selfattention``), any ViT.

    Warns when the matrix exceeds ``budget_mb``; prefer :func:`attention_maps` for maps.
    """
    _check_vit(model)
    (index,) = _resolve_layers([layer], len(model.blocks))
    x = vit_tokens(model, images)
    t = x.shape[1]
    heads = model.blocks[index].attn.num_heads
    size_mb = images.shape[0] * heads * t * t * 4 / 2**20
    if size_mb > budget_mb:
        logger.warning("full attention of block %d: %.0f MB (%d heads x %d^2 tokens x 4 B)", index, size_mb, heads, t)
    for blk in model.blocks[:index]:
        x = blk(x)
    target = model.blocks[index]
    return explicit_attention(target.attn, target.norm1(x))
