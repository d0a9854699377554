"""Command-line twin of the ``propagate_segmentation`` notebook.

Examples::

    python -m dino_lib.propagation --config params/propagate_segmentation/ci.yaml
    python -m dino_lib.propagation --config params/propagate_segmentation/ipace_dino_vits16.yaml \\
        data_path=/data/driving pretrained_weights=/ckpt/dino_vits16.pth output_dir=runs/ipace_vits16
    python -m dino_lib.propagation --config params/propagate_segmentation/davis2017_dino_vits16.yaml \\
        data_path=/data/DAVIS pretrained_weights=/ckpt/dino_deitsmall16_pretrain.pth

Prints one JSON line per video (frames written/skipped, timings) and writes ``OUTPUT_DIR/<video>/``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from dino_lib.cli import entry, parse_config, run_folder
from dino_lib.config import save_run_config
from dino_lib.propagation.config import PropagationConfig
from dino_lib.propagation.run import propagate

PROG = "python -m dino_lib.propagation"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(PropagationConfig, argv, prog=PROG, description=__doc__ or "")
    with run_folder(cfg):
        results = propagate(cfg, on_start=lambda: save_run_config(cfg, cfg.output_dir))
    for result in results:
        print(
            json.dumps(
                {
                    "run": result.name,
                    "out_dir": str(result.out_dir),
                    "written": result.written,
                    "skipped": result.skipped,
                    **result.timings,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(entry(main, PROG))
