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

The launch keys are obeyed: started outside torchrun/Slurm with ``launcher: torchrun`` (one node) or
``launcher: slurm``, this command hands the run to :func:`dino_lib.launch.launch`; with ``launcher: torchrun`` and
``nnodes > 1`` it stops and prints the torchrun command to run on every node. It never trains one process instead.
Rank 0 logs one line per epoch (loss, lr, teacher entropy, k-NN, images/s, ETA) and shows a tqdm bar on a terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import dino_lib.hierarchical  # noqa: F401  (registers the training task ``regions``)
from dino_lib.cli import entry, parse_config, run_folder
from dino_lib.runtime import env_rank, under_launcher
from dino_lib.train.config import TrainConfig

PROG = "python -m dino_lib.train"


def main(argv: Sequence[str] | None = None) -> int:
    rank = env_rank()
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )
    cfg = parse_config(TrainConfig, argv, prog=PROG, description="DINO self-supervised pretraining")
    if cfg.launcher != "local" and not under_launcher():
        return _hand_over(cfg)
    from dino_lib.launch import default_callbacks
    from dino_lib.train.loop import train
    from dino_lib.train.progress import EpochLines, ProgressBar

    bar = ProgressBar(enabled=rank == 0 and sys.stderr.isatty(), desc="pretrain")
    lines = EpochLines()

    def progress(rec: dict) -> None:
        bar(rec)
        lines(rec)

    try:
        with run_folder(cfg):
            result = train(cfg, callback=progress, callbacks=default_callbacks(cfg))
    finally:
        bar.close()
    if rank == 0:
        print(f"done: {result.epochs_done} epochs; checkpoint {result.checkpoint}; teacher {result.teacher_export}")
    return 0


def multinode_command(cfg: TrainConfig, config_path: str) -> str:
    """The torchrun line to run on every node of a multi-node run (``NODE_RANK`` and ``HEAD_NODE`` per cluster)."""
    return (
        f"torchrun --nnodes {cfg.nnodes} --nproc_per_node {cfg.nproc_per_node} --node_rank $NODE_RANK "
        f"--rdzv_backend c10d --rdzv_endpoint $HEAD_NODE:29500 -m dino_lib.train --config {config_path}"
    )


def _hand_over(cfg: TrainConfig) -> int:
    """``launcher: torchrun|slurm`` outside a launcher: re-launch through dino_lib.launch, or print what to run."""
    from dino_lib.launch import launch, write_launch_config

    if cfg.launcher == "torchrun" and cfg.nnodes > 1:
        path = write_launch_config(cfg)
        print(
            f"config asks for launcher: torchrun on {cfg.nnodes} nodes, which one command cannot start; nothing was "
            f"trained. Run on every node (NODE_RANK = 0..{cfg.nnodes - 1}, HEAD_NODE = the address of node 0):\n"
            f"  {multinode_command(cfg, str(path))}\n"
            "or use launcher=slurm, or launcher=local to train a single process",
            file=sys.stderr,
        )
        return 2
    what = f"{cfg.nproc_per_node} processes" if cfg.launcher == "torchrun" else "a Slurm job"
    logging.getLogger("dino_lib.train").info(
        "config asks for launcher: %s; starting %s through dino_lib.launch (launcher=local trains one process here)",
        cfg.launcher,
        what,
    )
    result = launch(cfg, echo=True)
    print(f"done: launcher {result.mode}; run directory {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(entry(main, PROG))
