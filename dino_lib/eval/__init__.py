"""Frozen-feature evaluation: weighted k-NN and linear probes (docs/evaluation.md), and the pretraining k-NN monitor."""

from dino_lib.data.labelled import DataError, LabelledImageFolder, labelled_splits
from dino_lib.eval.knn import DEFAULT_NB_KNN, knn_classify, knn_evaluate, knn_neighbors, knn_scores
from dino_lib.eval.linear import LinearClassifier, ProbeHyperparameters, train_linear_probe
from dino_lib.eval.monitor import knn_monitor

__all__ = [
    "DEFAULT_NB_KNN",
    "DataError",
    "LabelledImageFolder",
    "LinearClassifier",
    "ProbeHyperparameters",
    "knn_classify",
    "knn_evaluate",
    "knn_monitor",
    "knn_neighbors",
    "knn_scores",
    "labelled_splits",
    "train_linear_probe",
]
