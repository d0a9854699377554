"""Sparse tiled propagation equals the dense reference formulation."""

from __future__ import annotations

import pytest
import torch

from dino_lib.propagation.core import ContextPropagator, PropagationParams, l2_normalise, propagate_frame
from dino_lib.propagation.neighbourhood import clipped_tiles, dense_window_mask, tile_layout


def dense_reference(target, ctx_feats, ctx_labels, topk, temperature, radius, shape="square"):
    """One propagation step, densely, as the reference does: exp(s/τ) * mask, joint top-k with ties, normalise."""
    n_ctx, d, h, w = ctx_feats.shape
    tgt = target.reshape(d, h * w).T.double()  # (hw_tgt, D)
    aff = torch.stack([torch.exp(tgt @ f.reshape(d, h * w).double() / temperature) for f in ctx_feats])
    if radius is not None:
        # the reference loops over every (target, source) pair; the same test written pair by pair
        mask = torch.zeros(h * w, h * w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                for u in range(h):
                    for v in range(w):
                        inside = (
                            max(abs(u - i), abs(v - j)) <= radius
                            if shape == "square"
                            else ((u - i) ** 2 + (v - j) ** 2 <= radius**2)
                        )
                        mask[i * w + j, u * w + v] = float(inside)
        aff = aff * mask  # (n_ctx, hw_tgt, hw_src)
    aff = aff.transpose(2, 1).reshape(-1, h * w)  # (n_ctx·hw_src, hw_tgt)
    kth = aff.topk(topk, dim=0).values.min(dim=0).values
    aff = torch.where(aff < kth, torch.zeros_like(aff), aff)
    aff = aff / aff.sum(0, keepdim=True)
    labels = ctx_labels.permute(1, 0, 2, 3).reshape(ctx_labels.shape[1], -1).double()  # (C, n_ctx·hw_src)
    return (labels @ aff).reshape(-1, h, w).float()


def _random_problem(n_ctx, d, h, w, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = l2_normalise(torch.randn(n_ctx + 1, d, h, w, generator=g), dim=1)
    labels = torch.rand(n_ctx, c, h, w, generator=g)
    labels = labels / labels.sum(1, keepdim=True)
    return feats[0], feats[1:], labels


@pytest.mark.parametrize(
    ("h", "w", "radius", "tile", "shape"),
    [
        (5, 7, 2, 3, "square"),
        (6, 9, 1, 4, "square"),
        (4, 4, 5, 8, "square"),
        (7, 5, 2, 2, "circle"),
        (3, 11, 0, 1, "square"),
    ],
)
def test_sparse_equals_dense_prp_m4(h, w, radius, tile, shape):
    target, ctx, labels = _random_problem(3, 6, h, w, 4, seed=h * w + radius)
    params = PropagationParams(topk=5, temperature=0.1, radius=radius, shape=shape, tile=tile, renormalise=False)
    got = propagate_frame(target, ctx, labels, params)
    want = dense_reference(target, ctx, labels, 5, 0.1, radius, shape)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_result_does_not_depend_on_tile_or_budget():
    target, ctx, labels = _random_problem(4, 8, 13, 17, 3, seed=3)
    base = propagate_frame(target, ctx, labels, PropagationParams(radius=4, tile=1))
    for tile, budget in [(3, 0.01), (8, 256.0), (8, 0.01), (32, 1.0)]:
        got = propagate_frame(target, ctx, labels, PropagationParams(radius=4, tile=tile, memory_budget_mb=budget))
        torch.testing.assert_close(got, base, atol=1e-6, rtol=1e-5)


def test_global_mode_equals_dense_without_window():
    target, ctx, labels = _random_problem(2, 5, 4, 6, 3, seed=7)
    got = propagate_frame(
        target, ctx, labels, PropagationParams(radius=None, renormalise=False, memory_budget_mb=0.001)
    )
    torch.testing.assert_close(got, dense_reference(target, ctx, labels, 5, 0.1, None), atol=1e-5, rtol=1e-5)


def test_ties_at_kth_value_are_all_kept():
    """Joint top-k keeps ties: every candidate equal to the k-th score votes (identical features -> all tie)."""
    d, h, w = 4, 3, 3
    target = l2_normalise(torch.ones(d, h, w))
    ctx = target.unsqueeze(0).clone()
    labels = torch.zeros(1, 2, h, w)
    labels[0, 1, 0, 0] = 1.0  # one source of nine carries class 1
    labels[0, 0] = 1 - labels[0, 1]
    pred = propagate_frame(target, ctx, labels, PropagationParams(topk=1, radius=None, renormalise=False))
    torch.testing.assert_close(pred[1], torch.full((h, w), 1 / 9))


def test_small_temperature_does_not_overflow_prp12():
    target, ctx, labels = _random_problem(2, 4, 5, 5, 3, seed=1)
    pred = propagate_frame(target, ctx, labels, PropagationParams(temperature=0.001, radius=2))
    assert torch.isfinite(pred).all()
    torch.testing.assert_close(pred.sum(0), torch.ones(5, 5))


def test_zero_mass_ignore_is_renormalised_and_all_ignore_predicts_nothing_prp03():
    d, h, w = 3, 4, 4
    feats = l2_normalise(torch.randn(d, h, w, generator=torch.Generator().manual_seed(0)))
    labels = torch.zeros(1, 2, h, w)
    labels[0, 0, :, :2] = 1.0  # right half is ignore (zero mass)
    params = PropagationParams(topk=3, radius=None)
    pred = propagate_frame(feats, feats[None], labels, params)
    mass = pred.sum(0)
    assert torch.all((mass - 1).abs() < 1e-5) or torch.all((mass == 0) | ((mass - 1).abs() < 1e-5))
    empty = propagate_frame(feats, feats[None], torch.zeros(1, 2, h, w), params)
    assert torch.count_nonzero(empty) == 0


def test_tile_layout_is_cached_and_window_matches_dense_mask_prp_m5():
    assert tile_layout(6, 7, 2, "square", 3) is tile_layout(6, 7, 2, "square", 3)
    mask = dense_window_mask(6, 7, 2)
    assert mask.shape == (42, 42) and mask[0].sum() == 9 and mask[3 * 7 + 3].sum() == 25


@pytest.mark.parametrize(("h", "w", "radius", "tile", "shape"), [(9, 13, 2, 4, "square"), (7, 10, 3, 3, "circle")])
def test_clipped_tiles_cover_the_grid_and_match_the_dense_mask(h, w, radius, tile, shape):
    """Every target cell is in exactly one tile, and its bias row is 0 exactly on its window (clipped regions)."""
    tiles = clipped_tiles(h, w, radius, shape, tile)
    assert tiles is clipped_tiles(h, w, radius, shape, tile)
    dense = dense_window_mask(h, w, radius, shape).view(h, w, h, w)
    covered = torch.zeros(h, w, dtype=torch.int64)
    for t in tiles:
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
        region = dense[t.y0 : t.y1, t.x0 : t.x1, t.ry0 : t.ry1, t.rx0 : t.rx1]
        assert torch.equal(t.bias.squeeze(2) == 0, region.reshape(t.bias.squeeze(2).shape))
        # the region holds the whole window of each of its targets
        assert int(region.sum()) == int(dense[t.y0 : t.y1, t.x0 : t.x1].sum())
    assert bool((covered == 1).all())


def test_context_queue_keeps_anchor_and_last_frames():
    target, ctx, labels = _random_problem(1, 4, 4, 4, 2)
    prop = ContextPropagator(PropagationParams(n_last_frames=2, radius=1))
    prop.add_anchor(ctx[0], labels[0])
    for _ in range(4):
        pred = prop.step(target)
    assert len(prop.anchors) == 1 and len(prop.queue) == 2
    assert pred.shape == (2, 4, 4)
    prop.add_anchor(ctx[0], torch.cat([labels[0], torch.zeros(1, 4, 4)]))  # a new id appears
    assert all(lab.shape[0] == 3 for _, _, lab in list(prop.anchors) + list(prop.queue))


def test_ties_are_kept_in_the_windowed_path_too():
    """Identical features everywhere: every window cell ties with the best one and votes."""
    d, h, w = 4, 5, 6
    target = l2_normalise(torch.ones(d, h, w))
    labels = torch.zeros(1, 2, h, w)
    labels[0, 1, 2, 3] = 1.0
    labels[0, 0] = 1 - labels[0, 1]
    pred = propagate_frame(target, target[None], labels, PropagationParams(topk=1, radius=1, tile=4))
    want = dense_reference(target, target[None], labels, 1, 0.1, 1)
    torch.testing.assert_close(pred, want, atol=1e-6, rtol=1e-5)
    assert pred[1, 2, 3] == pytest.approx(1 / 9)


def test_bf16_preselection_with_exact_rescoring_matches_fp32():
    """score_dtype=bfloat16 only pre-selects candidates; the final top-k and weights are exact fp32."""
    target, ctx, labels = _random_problem(4, 32, 12, 19, 3, seed=11)
    exact = propagate_frame(target, ctx, labels, PropagationParams(radius=3, tile=4))
    fast = propagate_frame(target, ctx, labels, PropagationParams(radius=3, tile=4, score_dtype="bfloat16"))
    torch.testing.assert_close(fast, exact, atol=1e-5, rtol=1e-5)
