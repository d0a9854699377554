"""Weighted k-nearest-neighbour classifier on frozen features (Wu et al., 2018; DINO's eval_knn).

The vote is the reference's, step by step: cosine similarity of L2-normalised features, the top-k train
neighbours sorted by similarity, a one-hot of their labels weighted by ``exp(sim / T)`` and summed per class, the
classes sorted by score (``torch.sort``, descending); top-1 = the best class is the target, "top-5" = the target is
among the first ``min(5, k)`` classes (also capped by the number of classes, where the reference would crash).

Fixed reference defects:

* queries are processed in chunks of a fixed maximum size derived from a memory budget, so any number of queries
  works (the reference's ``N_test // 100`` step is zero below 100 queries and crashes);
* ``num_classes`` defaults to ``max(label) + 1`` of the data instead of a hard-coded 1000;
* ``k > N_train`` is clamped with a warning; labels outside ``[0, num_classes)`` raise;
* by default the weights are ``exp((sim - max_sim) / T)`` per query: every class score of a query is scaled by the
  same positive constant, so predictions are those of the reference and small temperatures no longer overflow
  fp32; the weights are summed per class with ``scatter_add`` (O(k) per query instead of the reference's O(k·C)
  one-hot product). ``reference_arithmetic=True`` uses the reference's unshifted weights and one-hot product, bit
  for bit; the two differ only by float rounding, i.e. only where class scores tie exactly.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = ["knn_classify", "knn_evaluate", "knn_scores", "knn_neighbors", "DEFAULT_NB_KNN"]

DEFAULT_NB_KNN = (10, 20, 100, 200)
_DEFAULT_CHUNK_BYTES = 256 * 2**20


def _check_inputs(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int,
    num_classes: int | None,
    test_labels: torch.Tensor | None = None,
) -> tuple[int, int]:
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"k-NN expects (N_train, D) and (N_test, D) features, found {tuple(train_features.shape)} and "
            f"{tuple(test_features.shape)}"
        )
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(f"train_labels has shape {tuple(train_labels.shape)}, expected ({train_features.shape[0]},)")
    if test_labels is not None and test_labels.shape != (test_features.shape[0],):
        raise ValueError(f"test_labels has shape {tuple(test_labels.shape)}, expected ({test_features.shape[0]},)")
    if train_features.shape[0] == 0:
        raise ValueError("k-NN needs at least one training feature")
    if k < 1:
        raise ValueError(f"k must be >= 1, found {k}")
    labels = [train_labels] + ([test_labels] if test_labels is not None and test_labels.numel() else [])
    if num_classes is None:
        num_classes = int(max(int(t.max()) for t in labels)) + 1
    for name, t in zip(("train_labels", "test_labels"), labels):
        if int(t.min()) < 0 or int(t.max()) >= num_classes:
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), found [{int(t.min())}, {int(t.max())}]; "
                "pass num_classes=None to take it from the data"
            )
    n_train = train_features.shape[0]
    if k > n_train:
        warnings.warn(f"k={k} exceeds the {n_train} training features; using k={n_train}", stacklevel=3)
        k = n_train
    return k, num_classes


def _chunk_size(
    n_train: int, k: int, num_classes: int, chunk_size: int | None, max_bytes: int, one_hot: bool = True
) -> int:
    if chunk_size is not None:
        return max(1, int(chunk_size))
    # per query: similarities (N_train), [the (k, C) one-hot and its weighted copy], scores and their sort
    per_query = 4 * n_train + (8 * k * num_classes if one_hot else 0) + 24 * num_classes + 16 * k
    return max(1, max_bytes // per_query)


def _topk_chunks(
    train_features: torch.Tensor, test_features: torch.Tensor, k: int, step: int, normalize: bool
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """Per chunk of queries: the ``k`` most similar train features, sorted descending, ``(b, k)`` each."""
    train = F.normalize(train_features.float(), dim=1) if normalize else train_features.float()
    train_t = train.t().contiguous()  # (D, N_train)
    for start in range(0, test_features.shape[0], step):
        queries = test_features[start : start + step].to(train.device).float()
        if normalize:
            queries = F.normalize(queries, dim=1)
        sims = queries @ train_t  # (b, N_train) cosine similarities
        top_sims, top_idx = sims.topk(k, dim=1, largest=True, sorted=True)  # (b, k)
        yield start, start + queries.shape[0], top_sims, top_idx


def _votes(
    top_sims: torch.Tensor,
    top_idx: torch.Tensor,
    train_labels: torch.Tensor,
    T: float,
    num_classes: int,
    reference_arithmetic: bool,
) -> torch.Tensor:
    """Class scores ``(b, C)``: the sum of ``exp(sim / T)`` over each class's neighbours among ``(b, k)``."""
    b, k = top_idx.shape
    neighbour_labels = train_labels[top_idx]  # (b, k)
    if reference_arithmetic:  # the reference's unshifted weights and (b, k, C) one-hot product, bit for bit
        one_hot = torch.zeros(b * k, num_classes, device=top_sims.device)  # (b*k, C)
        one_hot.scatter_(1, neighbour_labels.reshape(-1, 1), 1)
        weights = top_sims.div(T).exp_()  # (b, k), unnormalised
        return torch.sum(one_hot.view(b, k, num_classes) * weights.view(b, k, 1), 1)  # (b, C)
    weights = (top_sims - top_sims[:, :1]).div_(T).exp_()  # (b, k); the first (sorted) similarity is the max
    scores = torch.zeros(b, num_classes, dtype=weights.dtype, device=weights.device)
    return scores.scatter_add_(1, neighbour_labels, weights)  # (b, C)


def _accuracies(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int],
    T: float,
    num_classes: int,
    chunk_size: int | None,
    max_chunk_bytes: int,
    normalize: bool,
    reference_arithmetic: bool,
) -> dict[int, tuple[float, float]]:
    """Top-1/top-5 for several ``k`` from one similarity pass (the first k of the sorted top-max(k) neighbours
    are the top-k neighbours, so every k sees exactly the neighbours the reference's separate pass would)."""
    k_max = max(ks)
    step = _chunk_size(train_features.shape[0], k_max, num_classes, chunk_size, max_chunk_bytes, reference_arithmetic)
    labels = train_labels.to(train_features.device, torch.int64)
    counts = {k: [0, 0] for k in ks}
    for start, end, top_sims, top_idx in _topk_chunks(train_features, test_features, k_max, step, normalize):
        targets = test_labels[start:end].to(top_idx.device).view(-1, 1)
        for k in ks:
            scores = _votes(top_sims[:, :k], top_idx[:, :k], labels, T, num_classes, reference_arithmetic)
            _, predictions = scores.sort(1, descending=True)  # (b, C) classes by score, as the reference
            correct = predictions.eq(targets)  # (b, C)
            counts[k][0] += int(correct[:, :1].sum())
            counts[k][1] += int(correct[:, : min(5, k, num_classes)].sum())
    n = test_features.shape[0]
    return {k: (100.0 * c[0] / n, 100.0 * c[1] / n) for k, c in counts.items()}


def knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int,
    T: float = 0.07,
    num_classes: int | None = None,
    *,
    chunk_size: int | None = None,
    max_chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
    normalize: bool = True,
    reference_arithmetic: bool = False,
) -> tuple[float, float]:
    """Weighted k-NN top-1 and top-5 accuracy in percent.

    Args:
        train_features, test_features: ``(N_train, D)`` and ``(N_test, D)``; L2-normalised here when ``normalize``.
        train_labels, test_labels: int64 class ids.
        k: neighbours (clamped to ``N_train`` with a warning).
        T: temperature of the ``exp(sim / T)`` votes (0.07 in the reference).
        num_classes: number of classes; ``None`` = ``max label + 1`` over both label sets.
        chunk_size: queries per chunk; ``None`` = as many as fit in ``max_chunk_bytes``.
        normalize: L2-normalise both feature sets (the reference normalises before calling its classifier).
        reference_arithmetic: unshifted weights and the one-hot product of the reference (bit for bit, slower);
            by default each query's best similarity is subtracted before the exponential (same predictions, no
            overflow) and votes are summed with ``scatter_add``.

    Returns:
        ``(top1, top5)`` in percent; top-5 counts the first ``min(5, k, num_classes)`` classes.
    """
    if test_features.shape[0] == 0:
        raise ValueError("k-NN needs at least one query feature")
    k, num_classes = _check_inputs(train_features, train_labels, test_features, k, num_classes, test_labels)
    return _accuracies(
        train_features,
        train_labels,
        test_features,
        test_labels,
        [k],
        T,
        num_classes,
        chunk_size,
        max_chunk_bytes,
        normalize,
        reference_arithmetic,
    )[k]


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int,
    T: float = 0.07,
    num_classes: int | None = None,
    *,
    chunk_size: int | None = None,
    max_chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
    normalize: bool = True,
) -> torch.Tensor:
    """Per-class probabilities ``(N_test, C)`` (vote scores divided by their sum); argmax = prediction."""
    k, num_classes = _check_inputs(train_features, train_labels, test_features, k, num_classes)
    out = torch.empty(test_features.shape[0], num_classes)
    step = _chunk_size(train_features.shape[0], k, num_classes, chunk_size, max_chunk_bytes, one_hot=False)
    labels = train_labels.to(train_features.device, torch.int64)
    for start, end, top_sims, top_idx in _topk_chunks(train_features, test_features, k, step, normalize):
        scores = _votes(top_sims, top_idx, labels, T, num_classes, reference_arithmetic=False)  # (b, C)
        out[start:end] = (scores / scores.sum(1, keepdim=True)).cpu()
    return out


def knn_neighbors(
    train_features: torch.Tensor, test_features: torch.Tensor, k: int, *, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities and indices ``(N_test, k)`` of each query's nearest train features (for galleries)."""
    k = min(k, train_features.shape[0])
    train_t = F.normalize(train_features.float(), dim=1).t()  # (D, N_train)
    sims, idx = [], []
    for start in range(0, test_features.shape[0], chunk_size):
        q = F.normalize(test_features[start : start + chunk_size].float(), dim=1)
        s, i = (q @ train_t).topk(k, dim=1)  # (b, k)
        sims.append(s)
        idx.append(i)
    return torch.cat(sims), torch.cat(idx)


def knn_evaluate(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    nb_knn: Sequence[int] = DEFAULT_NB_KNN,
    T: float = 0.07,
    num_classes: int | None = None,
    *,
    chunk_size: int | None = None,
    max_chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
    normalize: bool = True,
    reference_arithmetic: bool = False,
) -> dict[int, dict[str, float]]:
    """:func:`knn_classify` for every k of ``nb_knn`` in one similarity pass: ``{k: {"top1": %, "top5": %}}``."""
    if test_features.shape[0] == 0:
        raise ValueError("k-NN needs at least one query feature")
    ks = []
    for k in nb_knn:
        k_used, num_classes = _check_inputs(
            train_features, train_labels, test_features, int(k), num_classes, test_labels
        )
        ks.append(k_used)
    acc = _accuracies(
        train_features,
        train_labels,
        test_features,
        test_labels,
        sorted(set(ks)),
        T,
        num_classes,
        chunk_size,
        max_chunk_bytes,
        normalize,
        reference_arithmetic,
    )
    results = {}
    for k, k_used in zip(nb_knn, ks):
        results[int(k)] = {"top1": acc[k_used][0], "top5": acc[k_used][1]}
        logger.info("%d-NN classifier result: top1 %.2f, top5 %.2f", k, *acc[k_used])
    return results
