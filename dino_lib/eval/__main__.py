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
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

from dino_lib.cli import entry, parse_config, run_folder
from dino_lib.eval.config import EvalConfig
from dino_lib.eval.run import run_evaluation


def _init_distributed(cfg: EvalConfig) -> None:
    """Join the torchrun process group (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        cfg.device = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")


PROG = "python -m dino_lib.eval"


def main(argv: Sequence[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = parse_config(EvalConfig, argv, prog=PROG, description=__doc__ or "")
    _init_distributed(cfg)
    with run_folder(cfg):
        summary = run_evaluation(cfg)
    if not dist.is_initialized() or dist.get_rank() == 0:
        brief = {
            "knn": summary.get("knn"),
            "linear": {k: v for k, v in summary.get("linear", {}).items() if k != "history"},
        }
        print(json.dumps(brief, indent=1, default=str))
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    raise SystemExit(entry(main, PROG))
