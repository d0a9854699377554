"""Command-line twin of notebooks/pretrain.ipynb.

Single process (CPU or one GPU)::

    python -m dino_lib.train --config params/pretrain/ci.yaml
    python -m dino_lib.train --config params/pretrain/vit_small_100ep.yaml data_path=/data/imagenet/train \
        output_dir=runs/vits16

One node, 8 GPUs (or 2 CPU processes with gloo)::

    torchrun --standalone --nproc_per_node 8 -m dino_lib.train --config params/pretrain/vit_small_100ep.yaml

Several nodes (run on every node; node_rank 0..N-1)::

    torchrun --nnodes 2 --nproc_per_node 8 --node_rank $NODE_RANK --rdzv_backend c10d \
        --rdzv_endpoint $HEAD_NODE:29500 -m dino_lib.train --config params/pretrain/vit_small_boosted.yaml

Slurm: ``python -m dino_lib.launch --config FILE launcher=slurm slurm.nodes=2 slurm.partition=gpu``.
An existing ``output_dir/checkpoint.pth`` is resumed automatically. ``--local-rank`` is never needed (the rank
comes from the environment).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from dino_lib.cli import entry, parse_config, run_folder
from dino_lib.runtime import env_rank
from dino_lib.train.config import TrainConfig

PROG = "python -m dino_lib.train"


def main(argv: Sequence[str] | None = None) -> int:
    rank = env_rank()
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )
    cfg = parse_config(TrainConfig, argv, prog=PROG, description="DINO self-supervised pretraining")
    from dino_lib.train.loop import train

    with run_folder(cfg):
        result = train(cfg)
    if rank == 0:
        print(f"done: {result.epochs_done} epochs; checkpoint {result.checkpoint}; teacher {result.teacher_export}")
    return 0


if __name__ == "__main__":
    sys.exit(entry(main, PROG))
