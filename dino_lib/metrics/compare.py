"""Side-by-side headline scores of several prediction folders (a trained backbone against random weights, ...).

The fork-compatible semantic number averages over *all* classes of the label set with absent classes scoring 0, so
on a clip that shows 5 of 27 classes it cannot exceed 5 / 27 = 0.185 however good the predictions are. Whether
predictions follow the ground truth is read from the mIoU over the classes present and the pixel accuracy (both on
the frames that were not given as labels); the fork number is kept next to them with its ceiling. DAVIS folders
report J&F, J and F means.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dino_lib.metrics.config import MetricsConfig
from dino_lib.metrics.pipeline import MetricsRun, evaluate, prepare
from dino_lib.metrics.report import DavisReport

__all__ = ["headline_scores", "compare_predictions"]


def headline_scores(run: MetricsRun) -> dict[str, float]:
    """The pooled numbers of one evaluated folder (see the module docstring for why these)."""
    report = run.report
    if isinstance(report, DavisReport):
        row = report.global_.iloc[0]
        return {"J&F": float(row["J&F-Mean"]), "J": float(row["J-Mean"]), "F": float(row["F-Mean"])}
    pooled = report.summary.iloc[-1]
    fork = report.fork.iloc[-1]
    return {
        "miou_present": float(pooled["miou_present"]),
        "pixel_acc": float(pooled["pixel_acc"]),
        "classes_present": int(pooled["classes_present"]),
        "miou_fork": float(fork["miou_fork"]),
        "miou_fork_ceiling": float(pooled["classes_present"]) / float(fork["num_classes"]),
    }


def compare_predictions(cfg: MetricsConfig, predictions: Mapping[str, str | Path]) -> pd.DataFrame:
    """Evaluate each ``name -> prediction folder`` against ``cfg.ground_truth``; one row of headline scores each.

    Nothing is written (use :func:`dino_lib.metrics.pipeline.run_metrics` for the tables and figures).

    Raises:
        ValueError: ``predictions`` is empty.
    """
    if not predictions:
        raise ValueError("compare_predictions: give at least one name -> prediction folder")
    rows = {}
    for name, folder in predictions.items():
        one = dataclasses.replace(cfg, predictions=str(folder))
        run = evaluate(one, prepare(one))
        rows[name] = headline_scores(run)
    return pd.DataFrame.from_dict(rows, orient="index")
