"""Command-line twin of the ``segmentation_metrics`` notebook.

``predictions`` (required) is the output folder of ``python -m dino_lib.propagation`` (or of the
``propagate_segmentation`` notebook). Examples::

    python -m dino_lib.propagation --config params/propagate_segmentation/ci.yaml output_dir=runs/ci/predictions
    python -m dino_lib.metrics --config params/segmentation_metrics/ci.yaml predictions=runs/ci/predictions
    python -m dino_lib.metrics --config params/segmentation_metrics/full.yaml predictions=out/propagation \\
        ground_truth=/data/driving output_dir=runs/metrics
    python -m dino_lib.metrics mode=davis ground_truth=/data/DAVIS predictions=out/davis output_dir=runs/davis
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dino_lib.cli import entry, parse_config, run_folder
from dino_lib.metrics.config import MetricsConfig
from dino_lib.metrics.pipeline import run_metrics
from dino_lib.viz.metrics import write_run_outputs

PROG = "python -m dino_lib.metrics"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(MetricsConfig, argv, prog=PROG, description=__doc__ or "")
    cfg.require_predictions()  # before the output folder is made: the metrics step scores existing predictions
    with run_folder(cfg):
        run = run_metrics(cfg)  # tables
        write_run_outputs(run)  # figures and video
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        if cfg.mode == "davis":
            print(run.report.global_.to_string(index=False))  # type: ignore[union-attr]
        else:
            print(run.report.summary.to_string(index=False))  # type: ignore[union-attr]
            print()
            print(run.report.fork[["run", "miou_fork", "frames_scored"]].to_string(index=False))  # type: ignore[union-attr]
            print("(miou_fork: fork-compatible number, see fork_compatible.csv for its definition)")
    print(f"outputs in {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(entry(main, PROG))
