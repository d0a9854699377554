"""Capture attention probabilities from outside ``forward`` with hooks.

Fused SDPA never materialises the probabilities, so :func:`capture_attention` temporarily switches only the
requested blocks to timm's explicit path (``attn.fused_attn = False``) and hooks the *input* of their attention
dropout (the softmax output, so the capture does not depend on dropout). On exit the fused flags are restored and
the hooks removed, also when the body raises. Asking for a layer that produced nothing raises instead of returning
an empty result (the silent failure of hook-based tools on fused models).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn

__all__ = ["AttentionCapture", "capture_attention"]


class AttentionCapture:
    """Probabilities captured per block; ``capture[layer]`` -> ``(B, heads, T, T)`` of the latest call."""

    def __init__(self, layers: list[int], depth: int) -> None:
        self.layers = layers
        self.depth = depth
        self._store: dict[int, list[torch.Tensor]] = {i: [] for i in layers}

    def _hook(self, index: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            self._store[index].append(args[0].detach().float())

        return hook

    def all(self, layer: int) -> list[torch.Tensor]:
        """Every capture of a block (one per forward call); raises when there is none."""
        index = layer % self.depth
        if index not in self._store:
            raise KeyError(f"layer {layer} was not requested; captured layers: {self.layers}")
        if not self._store[index]:
            raise RuntimeError(
                f"no attention was captured for block {index}: the block did not run its explicit path "
                "(was the model called inside the 'with' block?)"
            )
        return list(self._store[index])

    def __getitem__(self, layer: int) -> torch.Tensor:
        return self.all(layer)[-1]


@contextlib.contextmanager
def capture_attention(model: nn.Module, layers: Sequence[int] = (-1,)) -> Iterator[AttentionCapture]:
    """Switch the given blocks to explicit attention and record their probabilities.

    Example::

        with capture_attention(model, layers=[-1]) as cap:
            model(x)
        attn = cap[-1]  # (B, heads, T, T)
    """
    blocks = model.blocks
    depth = len(blocks)
    indices = []
    for layer in layers:
        if not -depth <= layer < depth:
            raise IndexError(f"layer {layer} out of range for {depth} blocks")
        indices.append(layer % depth)
    capture = AttentionCapture(indices, depth)
    saved: list[tuple[nn.Module, bool]] = []
    handles = []
    try:
        for i in indices:
            attn = blocks[i].attn
            if not hasattr(attn, "fused_attn") or not hasattr(attn, "attn_drop"):
                raise TypeError(f"block {i}: attention module {type(attn).__name__} has no fused_attn/attn_drop")
            saved.append((attn, attn.fused_attn))
            attn.fused_attn = False
            handles.append(attn.attn_drop.register_forward_pre_hook(capture._hook(i)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()
        for attn, flag in saved:
            attn.fused_attn = flag
