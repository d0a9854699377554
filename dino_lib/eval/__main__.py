"""``python -m dino_lib.eval --config FILE [key=value ...]``: k-NN and/or linear probe of a frozen backbone.

Examples::

    # tiny CPU run on the sample data
    python -m dino_lib.eval --config params/evaluate/ci.yaml
    # reference settings (ViT-S/16, ImageNet), one node with 8 GPUs
    torchrun --nproc_per_node 8 -m dino_lib.eval --config params/evaluate/imagenet_vit_small.yaml \
        data_path=/data/imagenet pretrained_weights=runs/pretrain/checkpoint.pth checkpoint_key=teacher
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from dino_lib.cli import entry, parse_config, run_folder
from dino_lib.eval.config import EvalConfig
from dino_lib.eval.run import run_evaluation
from dino_lib.runtime import destroy_distributed, is_main_process
from dino_lib.runtime.ranks import setup_config_process

PROG = "python -m dino_lib.eval"


def main(argv: Sequence[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = parse_config(EvalConfig, argv, prog=PROG, description=__doc__ or "")
    setup_config_process(cfg)
    with run_folder(cfg):
        summary = run_evaluation(cfg)
    if is_main_process():
        brief = {
            "knn": summary.get("knn"),
            "linear": {k: v for k, v in summary.get("linear", {}).items() if k != "history"},
        }
        print(json.dumps(brief, indent=1, default=str))
    destroy_distributed()
    return summary


if __name__ == "__main__":
    raise SystemExit(entry(main, PROG))
