"""Figures for frozen-feature evaluation: confusion matrix, nearest-neighbour gallery, 2-D feature embedding,
linear-probe curves and the k-NN monitor curves of a pretraining log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

__all__ = [
    "plot_confusion",
    "plot_neighbour_gallery",
    "embed_2d",
    "plot_embedding",
    "plot_linear_history",
    "read_knn_log",
    "plot_knn_history",
]


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], title: str = "confusion matrix") -> plt.Figure:
    """Row-normalised confusion matrix (rows = true class) with the counts written in each cell."""
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if confusion[i, j]:
                ax.text(
                    j,
                    i,
                    int(confusion[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_neighbour_gallery(
    queries: Sequence[Image.Image],
    neighbours: Sequence[Sequence[Image.Image]],
    query_titles: Sequence[str],
    neighbour_titles: Sequence[Sequence[str]],
    ok: Sequence[Sequence[bool]] | None = None,
) -> plt.Figure:
    """One row per query: the query image, then its nearest train images (green/red frame = same/other class)."""
    rows, cols = len(queries), 1 + max((len(n) for n in neighbours), default=0)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows), squeeze=False)
    for r in range(rows):
        row = [(queries[r], query_titles[r], None)] + [
            (img, t, None if ok is None else ok[r][c])
            for c, (img, t) in enumerate(zip(neighbours[r], neighbour_titles[r]))
        ]
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            img, title, good = row[c]
            ax.imshow(img)
            ax.set_title(title, fontsize=7)
            colour = "black" if good is None else ("tab:green" if good else "tab:red")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if good is not None else 1)
    fig.tight_layout()
    return fig


def embed_2d(features: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D projection ``(N, 2)`` of L2-normalised features by PCA or t-SNE (scikit-learn)."""
    x = torch.nn.functional.normalize(features.float(), dim=1).numpy()
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    raise ValueError(f"embedding method must be 'pca' or 'tsne', found {method!r}")


def plot_embedding(points: np.ndarray, labels: Sequence[int], classes: Sequence[str], title: str = "") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    labels = np.asarray(labels)
    for c, name in enumerate(classes):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=14, color=cmap(c % cmap.N), label=name)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_linear_history(history: Sequence[dict[str, Any]]) -> plt.Figure:
    """Training loss and validation top-1 per epoch of a linear probe."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
    a.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("train loss")
    val = [h for h in history if "val" in h]
    b.plot([h["epoch"] for h in val], [h["val"]["acc1"] for h in val], marker="o")
    b.set_xlabel("epoch")
    b.set_ylabel("val top-1 (%)")
    fig.tight_layout()
    return fig


def read_knn_log(log_path: str | Path) -> list[dict[str, Any]]:
    """Records of a pretraining ``log.jsonl`` that carry a k-NN monitor value (any key containing ``knn``)."""
    rows = []
    for line in Path(log_path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if any("knn" in k for k in record):
                rows.append(record)
    return rows


def plot_knn_history(log_path: str | Path) -> plt.Figure | None:
    """k-NN monitor curves (e.g. ``teacher_knn_top1``, ``student_knn_top1``) against the epoch; None if absent."""
    rows = read_knn_log(log_path)
    if not rows:
        return None
    keys = sorted({k for r in rows for k in r if "knn" in k and isinstance(r[k], int | float)})
    fig, ax = plt.subplots(figsize=(6, 3))
    for key in keys:
        pts = [(r.get("epoch", i), r[key]) for i, r in enumerate(rows) if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("k-NN accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
