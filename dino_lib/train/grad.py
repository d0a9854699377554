"""Per-parameter gradient clipping and last-layer freezing, as in the reference DINO trainer."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["clip_gradients", "cancel_gradients_last_layer"]


@torch.no_grad()
def clip_gradients(model: nn.Module, clip: float) -> list[float]:
    """Scale each parameter's gradient by ``clip / (||g|| + 1e-6)`` when that is below 1 (not a global norm).

    Returns:
        The gradient norms before clipping (unused by the trainer; handy for tests and monitors).
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return []
    norms = torch._foreach_norm(grads)  # one norm per tensor
    coefs = [clip / (n + 1e-6) for n in norms]
    for g, c in zip(grads, coefs):
        g.mul_(torch.clamp(c, max=1.0))
    return [float(n) for n in norms]


def cancel_gradients_last_layer(epoch: int, model: nn.Module, freeze_last_layer: int) -> None:
    """While ``epoch < freeze_last_layer`` set the gradient of every ``last_layer`` parameter to None.

    ``None`` (not zero) matters: optimisers then skip the parameter, so it gets no momentum/Adam update and no
    decoupled weight decay.
    """
    if epoch >= freeze_last_layer:
        return
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None
