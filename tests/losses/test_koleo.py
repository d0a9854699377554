"""KoLeo regulariser: value against a direct computation, and its push apart."""

from __future__ import annotations

import math

import pytest
import torch

from dino_lib.losses import koleo_loss


def test_koleo_matches_nearest_neighbour_distances():
    torch.manual_seed(0)
    x = torch.randn(12, 5)
    unit = x / x.norm(dim=1, keepdim=True)
    expected = []
    for i in range(12):
        d = min(float((unit[i] - unit[j]).norm()) for j in range(12) if j != i)
        expected.append(-math.log(d + 1e-8))
    assert koleo_loss(x).item() == pytest.approx(sum(expected) / 12, rel=1e-5)


def test_koleo_gradient_spreads_nearby_features():
    """Two almost equal features cost much more than spread ones, and a gradient step moves them apart."""
    close = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
    spread = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert koleo_loss(close) > koleo_loss(spread) + 1.0
    koleo_loss(close).backward()
    with torch.no_grad():
        moved = close - 0.01 * close.grad
    gap = lambda v: float((v[0] / v[0].norm() - v[1] / v[1].norm()).norm())  # noqa: E731
    assert gap(moved) > gap(close.detach())


def test_koleo_needs_two_features():
    with pytest.raises(ValueError, match="at least 2"):
        koleo_loss(torch.randn(1, 4))
