"""Multi-crop wrapper: one backbone pass per run of equal-resolution crops, one head pass.

Crops ``[g1, g2, l1, ..., ln]`` (each ``(B, C, H, W)``) are grouped into runs of **consecutive** crops with the same
width; each run is concatenated along the batch and sent through the backbone once. The features are stacked in
crop-major order (all B images of crop 0, then crop 1, ...) and the head runs once: the loss relies on this layout.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["MultiCropWrapper", "crop_runs"]


def crop_runs(widths: list[int]) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of consecutive equal widths, e.g. ``[224, 224, 96, 96] -> [(0, 2), (2, 4)]``."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(widths) + 1):
        if i == len(widths) or widths[i] != widths[start]:
            runs.append((start, i))
            start = i
    return runs


class MultiCropWrapper(nn.Module):
    """Backbone + head applied to a list of crops (or a single tensor).

    The backbone's classifier attributes (``fc``, ``head``) are replaced by identities, as in the reference, so
    torchvision ResNets and ViTs both return pooled features.

    Args:
        backbone: returns ``(N, D)`` features (a tuple output uses its first element).
        head: maps ``(N, D)`` to ``(N, K)``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        for attr in ("fc", "head"):
            if isinstance(getattr(backbone, attr, None), nn.Module):
                setattr(backbone, attr, nn.Identity())
        self.backbone = backbone
        self.head = head

    def forward_backbone(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Backbone features of all crops in crop-major order, ``(n_crops * B, D)``."""
        crops = [x] if isinstance(x, torch.Tensor) else list(x)
        feats = []
        for start, end in crop_runs([int(c.shape[-1]) for c in crops]):
            out = self.backbone(torch.cat(crops[start:end]))  # ((end - start) * B, D)
            if isinstance(out, tuple):
                out = out[0]
            feats.append(out)
        return torch.cat(feats)

    def forward(
        self, x: torch.Tensor | list[torch.Tensor], return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Head outputs ``(n_crops * B, K)``; with ``return_features`` also the backbone features ``(n_crops * B,
        D)`` (through ``forward`` so that DistributedDataParallel sees one call)."""
        features = self.forward_backbone(x)
        out = self.head(features)
        return (out, features) if return_features else out
