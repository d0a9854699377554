"""Evaluation figures (dino_lib.viz.evaluation): embeddings and the pretraining k-NN monitor curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dino_lib.viz import evaluation as figures  # noqa: E402


def test_knn_history_reads_monitor_keys(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    rows = [
        {"type": "epoch", "epoch": 0, "loss": 9.0},
        {"type": "epoch", "epoch": 1, "loss": 8.0, "knn_teacher_top1": 40.0, "knn_student_top1": 30.0},
        {"type": "epoch", "epoch": 3, "loss": 7.0, "knn_teacher_top1": 55.0, "knn_student_top1": 45.0},
    ]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [r["epoch"] for r in figures.read_knn_log(log)] == [1, 3]
    fig = figures.plot_knn_history(log)
    lines = {line.get_label(): line.get_ydata().tolist() for line in fig.axes[0].get_lines()}
    assert lines == {"knn_student_top1": [30.0, 45.0], "knn_teacher_top1": [40.0, 55.0]}
    log.write_text(json.dumps(rows[0]) + "\n")
    assert figures.plot_knn_history(log) is None


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_separates_clusters(method: str):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2, 16, generator=g) * 5
    labels = torch.arange(2).repeat_interleave(15)
    points = figures.embed_2d(centres[labels] + 0.1 * torch.randn(30, 16, generator=g), method)
    assert points.shape == (30, 2)
    a, b = points[:15].mean(0), points[15:].mean(0)
    assert np.linalg.norm(a - b) > 3 * max(points[:15].std(0).max(), points[15:].std(0).max())
    with pytest.raises(ValueError, match="pca"):
        figures.embed_2d(torch.randn(4, 3), "umap")
