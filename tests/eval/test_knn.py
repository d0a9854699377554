"""Weighted k-NN against a hand-computed case and an independent vote."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dino_lib.eval import knn_classify, knn_evaluate, knn_neighbors, knn_scores


def blobs(n_per_class: int, num_classes: int, dim: int = 16, spread: float = 0.6, seed: int = 0):
    """Gaussian clusters on the sphere (fixed centres, noise from ``seed``); continuous values, so similarities and
    scores have no ties."""
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    feats = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    return F.normalize(feats[perm], dim=1), labels[perm]


def independent_vote(train_f, train_l, test_f, test_l, k, T, bounds=False):
    """Plain-Python re-derivation of the vote: per query, sorted neighbours, class sums of exp(sim/T), ranked classes.

    The reference ranks *all* classes, so when fewer than min(5, k) classes received votes, zero-score classes fill
    the "top-5" in sort order (a tie). Those queries are counted in an upper bound only (``bounds=True``)."""
    top1 = top5 = ambiguous = 0
    k = min(k, len(train_l))
    for q, target in zip(test_f.double(), test_l.tolist()):
        sims = (train_f.double() @ q).tolist()
        order = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        score: dict[int, float] = {}
        for i in order:
            score[int(train_l[i])] = score.get(int(train_l[i]), 0.0) + math.exp(sims[i] / T)
        ranked = sorted(score, key=lambda c: -score[c])
        top1 += ranked[0] == target
        top5 += target in ranked[: min(5, k)]
        ambiguous += target not in ranked and len(ranked) < min(5, k)
    n = len(test_l)
    if bounds:
        return 100.0 * top1 / n, 100.0 * top5 / n, 100.0 * (top5 + ambiguous) / n
    return 100.0 * top1 / n, 100.0 * top5 / n


def test_hand_computed_example():
    # train on the unit circle at angles 0, 10, 90, 100 degrees; classes 0, 0, 1, 1; query at 60 degrees.
    angles = torch.tensor([0.0, 10.0, 90.0, 100.0]) * math.pi / 180
    train = torch.stack([angles.cos(), angles.sin()], 1)
    labels = torch.tensor([0, 0, 1, 1])
    q = torch.tensor([[math.cos(math.pi / 3), math.sin(math.pi / 3)]])
    # k=3: neighbours 90 (cos 30 = .866), 100 (cos 40 = .766), 10 (cos 50 = .643).
    # class 1: e^(.866/.07) + e^(.766/.07) = 2.35e5 + 5.63e4; class 0: e^(.643/.07) = 9.6e3 -> predicts 1.
    assert knn_classify(train, labels, q, torch.tensor([1]), k=3, T=0.07) == (100.0, 100.0)
    assert knn_classify(train, labels, q, torch.tensor([0]), k=3, T=0.07) == (0.0, 100.0)  # top-min(5,k) holds 0
    # with a huge T the weights are ~equal and counts decide: k=3 -> class 1 (2 votes); k=4 ties are avoided by T.
    probs = knn_scores(train, labels, q, k=3, T=0.07)
    expected1 = math.exp(math.cos(math.radians(30)) / 0.07) + math.exp(math.cos(math.radians(40)) / 0.07)
    expected0 = math.exp(math.cos(math.radians(50)) / 0.07)
    assert probs[0, 1].item() == pytest.approx(expected1 / (expected0 + expected1), rel=1e-5)


@pytest.mark.parametrize("n_test", [150, 37, 1])
@pytest.mark.parametrize("k", [1, 3, 10, 20])
@pytest.mark.parametrize("reference_arithmetic", [False, True])
def test_matches_independent_vote(n_test: int, k: int, reference_arithmetic: bool):
    train_f, train_l = blobs(40, 7, seed=1)
    test_f, test_l = blobs(n_test // 7 + 1, 7, seed=2)
    test_f, test_l = test_f[:n_test], test_l[:n_test]
    got1, got5 = knn_classify(train_f, train_l, test_f, test_l, k=k, T=0.07, reference_arithmetic=reference_arithmetic)
    want1, low5, high5 = independent_vote(train_f, train_l, test_f, test_l, k, 0.07, bounds=True)
    assert got1 == pytest.approx(want1)
    assert low5 - 1e-9 <= got5 <= high5 + 1e-9


def test_top5_is_top_min_5_k_and_small_query_sets():
    """'top-5' counts min(5, k) classes; fewer than 100 queries work."""
    train_f, train_l = blobs(10, 8, spread=2.0, seed=3)
    test_f, test_l = blobs(2, 8, spread=2.0, seed=4)
    for k in (1, 2, 4):
        top1, top5 = knn_classify(train_f, train_l, test_f, test_l, k=k, T=0.07)
        want1, low5, high5 = independent_vote(train_f, train_l, test_f, test_l, k, 0.07, bounds=True)
        assert top1 == pytest.approx(want1) and low5 - 1e-9 <= top5 <= high5 + 1e-9
    assert (
        knn_classify(train_f, train_l, test_f, test_l, k=1, T=0.07)[0]
        == knn_classify(train_f, train_l, test_f, test_l, k=1, T=0.07)[1]
    )  # k = 1: top-5 is top-1


def test_chunking_does_not_change_results():
    train_f, train_l = blobs(30, 5, seed=5)
    test_f, test_l = blobs(21, 5, seed=6)
    ref = knn_classify(train_f, train_l, test_f, test_l, k=10, T=0.07)
    for chunk in (1, 7, 1000):
        assert knn_classify(train_f, train_l, test_f, test_l, k=10, T=0.07, chunk_size=chunk) == ref
    assert knn_classify(train_f, train_l, test_f, test_l, k=10, T=0.07, max_chunk_bytes=1) == ref


def test_num_classes_from_data_and_label_errors():
    train_f, train_l = blobs(5, 3, seed=7)
    test_f, test_l = blobs(2, 3, seed=8)
    assert knn_classify(train_f, train_l, test_f, test_l, k=5) == knn_classify(
        train_f, train_l, test_f, test_l, k=5, num_classes=3
    )
    with pytest.raises(ValueError, match="train_labels must lie in"):
        knn_classify(train_f, train_l, test_f, test_l, k=5, num_classes=2)
    with pytest.raises(ValueError, match="test_labels must lie in"):
        knn_classify(train_f, train_l, test_f, test_l + 5, k=5, num_classes=3)
    with pytest.raises(ValueError, match="k must be"):
        knn_classify(train_f, train_l, test_f, test_l, k=0)


def test_k_larger_than_train_set_is_clamped_with_a_warning():
    train_f, train_l = blobs(3, 2, seed=9)
    test_f, test_l = blobs(4, 2, seed=10)
    with pytest.warns(UserWarning, match="exceeds the 6 training features"):
        got = knn_classify(train_f, train_l, test_f, test_l, k=200, T=0.07)
    assert got == knn_classify(train_f, train_l, test_f, test_l, k=6, T=0.07)


def test_small_temperature_does_not_overflow():
    train_f, train_l = blobs(20, 4, seed=11)
    test_f, test_l = blobs(5, 4, seed=12)
    # T = 0.005: e^(1/T) overflows fp32 (inf scores, arbitrary ranking) unless the max similarity is subtracted
    got = knn_classify(train_f, train_l, test_f, test_l, k=10, T=0.005)
    assert got == pytest.approx(independent_vote(train_f, train_l, test_f, test_l, 1, 0.005))  # ~ nearest neighbour
    assert torch.isfinite(knn_scores(train_f, train_l, test_f, k=10, T=0.005)).all()


def test_scores_evaluate_and_neighbours_agree():
    train_f, train_l = blobs(15, 4, seed=13)
    test_f, test_l = blobs(6, 4, seed=14)
    probs = knn_scores(train_f, train_l, test_f, k=20, T=0.07)
    assert torch.allclose(probs.sum(1), torch.ones(len(test_l)))
    top1 = 100.0 * (probs.argmax(1) == test_l).float().mean().item()
    results = knn_evaluate(train_f, train_l, test_f, test_l, nb_knn=(10, 20), T=0.07)
    assert results[20]["top1"] == pytest.approx(top1)
    sims, idx = knn_neighbors(train_f, test_f, k=3)
    brute = (test_f @ train_f.t()).topk(3, dim=1)
    assert torch.equal(idx, brute.indices) and torch.allclose(sims, brute.values)


def test_unnormalised_inputs_are_normalised():
    train_f, train_l = blobs(10, 3, seed=15)
    test_f, test_l = blobs(4, 3, seed=16)
    scale = torch.rand(len(train_l), 1) * 5 + 0.1
    assert knn_classify(train_f * scale, train_l, test_f * 3, test_l, k=5) == knn_classify(
        train_f, train_l, test_f, test_l, k=5
    )


def test_one_pass_over_all_k_equals_separate_runs_and_both_arithmetics_agree():
    train_f, train_l = blobs(25, 6, spread=1.2, seed=17)
    test_f, test_l = blobs(20, 6, spread=1.2, seed=18)
    together = knn_evaluate(train_f, train_l, test_f, test_l, nb_knn=(10, 20, 100), T=0.07)
    for k, acc in together.items():
        alone = knn_classify(train_f, train_l, test_f, test_l, k=k, T=0.07)
        ref = knn_classify(train_f, train_l, test_f, test_l, k=k, T=0.07, reference_arithmetic=True)
        assert (acc["top1"], acc["top5"]) == alone == ref
