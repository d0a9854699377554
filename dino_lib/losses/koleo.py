"""KoLeo regulariser: spread a batch of features over the sphere (Sablayrolles et al., "Spreading vectors for
similarity search", ICLR 2019; used on the student's class tokens in DINOv2, Oquab et al., 2023, weight 0.1).

For L2-normalised features ``x_i`` and the distance ``d_i`` of each to its nearest other feature in the batch, the
loss is ``-mean(log(d_i + eps))``: it grows without bound when two features coincide, so minimising it pushes the
batch apart and makes the collapse of every image onto one representation costly. DINO itself has no such term;
it is an option of the small-data recipe, where the batches are small and collapse is the common failure.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["koleo_loss"]


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo loss of ``(N, D)`` features (N >= 2), computed in fp32."""
    if features.shape[0] < 2:
        raise ValueError(f"the KoLeo loss needs at least 2 features per batch, got {features.shape[0]}")
    x = F.normalize(features.float(), dim=-1, eps=eps)
    with torch.no_grad():
        similarity = x @ x.t()
        similarity.fill_diagonal_(-2.0)  # never one's own neighbour
        nearest = similarity.argmax(dim=1)
    distance = (x - x[nearest]).norm(dim=-1)
    return -torch.log(distance + eps).mean()
