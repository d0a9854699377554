"""Start pretraining from a notebook or a shell: in-process, through torchrun, or on Slurm (submitit).

``launch(cfg)`` dispatches on ``cfg.launcher``:

* ``local`` -- :func:`dino_lib.train.train` in this process (CPU or one GPU), progress from its callback;
* ``torchrun`` -- ``python -m torch.distributed.run --standalone --nproc_per_node N -m dino_lib.train --config
  FILE`` as a subprocess; its output is streamed to ``RUN_DIR/launch/torchrun.log`` and progress is read from
  ``RUN_DIR/log.jsonl``. torchrun stops every worker as soon as one fails, so a dead worker fails the launch;
* ``slurm`` -- a submitit job (``slurm.nodes`` x ``slurm.gpus_per_node`` tasks) that sets the rank variables
  from the Slurm environment and calls the same entry point; on preemption or timeout it is re-queued and resumes
  from ``RUN_DIR/checkpoint.pth``. ``slurm.dry_run`` prints the job instead of submitting it;
  ``slurm.executor: local`` runs it with submitit's local executor (tests, laptops).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dino_lib.hierarchical  # noqa: F401  (registers the training task ``regions``, also inside Slurm jobs)
from dino_lib.config import from_dict, to_dict
from dino_lib.train.config import TrainConfig
from dino_lib.train.monitors import read_log
from dino_lib.train.progress import EpochLines, ProgressBar
from dino_lib.utils.io import atomic_write_text

if TYPE_CHECKING:
    from dino_lib.train.callbacks import TrainCallback


logger = logging.getLogger(__name__)

__all__ = [
    "LaunchResult",
    "default_callbacks",
    "launch",
    "torchrun_command",
    "write_launch_config",
    "slurm_parameters",
    "DinoSlurmJob",
    "follow_log",
]


def default_callbacks(cfg: TrainConfig) -> list[TrainCallback]:
    """The callbacks a training configuration asks for: the k-NN monitor of ``knn_every`` (when > 0) and, with
    ``tensorboard: true``, the teacher's attention image at each k-NN epoch. The trainer imports neither
    evaluation nor attention; the entry points (the command line, the launchers, notebooks) pass these in::

        train(cfg, callbacks=default_callbacks(cfg))
    """
    if not cfg.knn_every:
        return []
    from dino_lib.attention.tracking import AttentionSnapshot
    from dino_lib.data.samples import resolve_data_path
    from dino_lib.eval.monitor import KnnMonitor

    callbacks: list[TrainCallback] = [KnnMonitor.from_config(cfg)]
    if cfg.tensorboard:
        folder = resolve_data_path(cfg.knn_data_path)
        callbacks.append(AttentionSnapshot.first_image_of(folder, image_size=cfg.knn_crop, every=cfg.knn_every))
    return callbacks


@dataclass
class LaunchResult:
    """What a launch produced: the run directory, the mode, and the log records at the end."""

    run_dir: Path
    mode: str
    returncode: int = 0
    job_id: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    dry_run: dict[str, Any] | None = None


def follow_log(
    run_dir: Path, still_running: Callable[[], bool], callback: Callable[[dict[str, Any]], None], poll_s: float = 0.5
) -> None:
    """Call ``callback`` with each new line of ``RUN_DIR/log.jsonl`` until ``still_running()`` is False."""
    path = Path(run_dir) / "log.jsonl"
    offset = path.stat().st_size if path.is_file() else 0
    buf = ""
    while True:
        running = still_running()
        if path.is_file():
            with open(path) as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset = fh.tell()
            buf += chunk
            *lines, buf = buf.split("\n")
            for line in lines:
                try:
                    callback(json.loads(line))
                except json.JSONDecodeError:
                    continue
        if not running:
            return
        time.sleep(poll_s)


def write_launch_config(cfg: TrainConfig) -> Path:
    """The config a subprocess reads, under RUN_DIR/launch/ (the trainer itself writes RUN_DIR/config.yaml)."""
    import yaml

    path = Path(cfg.output_dir) / "launch" / f"config-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.yaml"
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def torchrun_command(cfg: TrainConfig, config_path: str | Path) -> list[str]:
    """The torchrun command for one node (``nnodes > 1`` needs a launch per node: see ``dino_lib.train``)."""
    if cfg.nnodes > 1:
        raise ValueError(
            f"launcher torchrun from a notebook starts one node; nnodes={cfg.nnodes} needs torchrun on every node "
            "(see python -m dino_lib.train --help) or launcher: slurm"
        )
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={cfg.nproc_per_node}",
        "-m",
        "dino_lib.train",
        "--config",
        str(config_path),
    ]


def _launch_torchrun(cfg: TrainConfig, progress: Callable[[dict[str, Any]], None], echo: bool) -> LaunchResult:
    run_dir = Path(cfg.output_dir)
    cmd = torchrun_command(cfg, write_launch_config(cfg))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    out_path = run_dir / "launch" / "torchrun.log"
    logger.info("running %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []

    def pump() -> None:
        with open(out_path, "a") as fh:
            for line in proc.stdout:  # type: ignore[union-attr]
                fh.write(line)
                fh.flush()
                tail.append(line)
                del tail[:-60]
                if echo:
                    print(line, end="")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    follow_log(run_dir, lambda: proc.poll() is None, progress)
    reader.join(timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(
            f"torchrun exited with status {proc.returncode}; full output in {out_path}. Last lines:\n"
            + "".join(tail[-30:])
        )
    return LaunchResult(run_dir, "torchrun", proc.returncode, records=read_log(run_dir / "log.jsonl"))


def slurm_parameters(cfg: TrainConfig) -> dict[str, Any]:
    """submitit executor parameters for ``cfg.slurm`` (what a dry run prints)."""
    s = cfg.slurm
    tasks = max(s.gpus_per_node, 1)
    params: dict[str, Any] = {
        "nodes": s.nodes,
        "tasks_per_node": tasks,
        "gpus_per_node": s.gpus_per_node,
        "cpus_per_task": s.cpus_per_task,
        "mem_gb": s.mem_gb_per_gpu * tasks,
        "timeout_min": s.time_min,
        "slurm_signal_delay_s": 120,
        "name": f"dino_{Path(cfg.output_dir).name}",
    }
    for key, value in (
        ("slurm_partition", s.partition),
        ("slurm_constraint", s.constraint),
        ("slurm_account", s.account),
        ("slurm_comment", s.comment),
    ):
        if value:
            params[key] = value
    return params


class DinoSlurmJob:
    """Picklable submitit callable: set torch.distributed variables from Slurm, train, re-queue on preemption."""

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        self.cfg_dict = cfg_dict

    def __call__(self) -> dict[str, Any]:
        import submitit

        env = submitit.JobEnvironment()
        os.environ.update(
            RANK=str(env.global_rank),
            LOCAL_RANK=str(env.local_rank),
            WORLD_SIZE=str(env.num_tasks),
            MASTER_ADDR=env.hostnames[0],
            MASTER_PORT=str(20000 + int(str(env.job_id).split("_")[0]) % 20000),
        )
        logging.basicConfig(level=logging.INFO if env.global_rank == 0 else logging.WARNING)
        from dino_lib.train.loop import train

        cfg = from_dict(TrainConfig, self.cfg_dict)
        result = train(cfg, callbacks=default_callbacks(cfg))
        return {"epochs_done": result.epochs_done, "last_epoch": result.last_epoch}

    def checkpoint(self) -> Any:
        """Called by submitit on preemption/timeout: re-submit the same job; it resumes from checkpoint.pth."""
        import submitit

        return submitit.helpers.DelayedSubmission(DinoSlurmJob(self.cfg_dict))


def _launch_slurm(cfg: TrainConfig, progress: Callable[[dict[str, Any]], None]) -> LaunchResult:
    run_dir = Path(cfg.output_dir)
    params = slurm_parameters(cfg)
    folder = Path(cfg.slurm.folder or run_dir / "slurm")
    if cfg.slurm.dry_run:
        job = {
            "executor": cfg.slurm.executor,
            "folder": str(folder),
            "parameters": params,
            "max_num_timeout": cfg.slurm.max_num_timeout,
            "entry": "dino_lib.launch.DinoSlurmJob -> dino_lib.train.train",
            "config": to_dict(cfg),
        }
        print(
            "Slurm job (dry run, nothing submitted):\n"
            + json.dumps({k: v for k, v in job.items() if k != "config"}, indent=2)
        )
        return LaunchResult(run_dir, "slurm", dry_run=job)
    import submitit

    if cfg.slurm.executor == "local":
        executor: Any = submitit.LocalExecutor(folder=folder, max_num_timeout=cfg.slurm.max_num_timeout)
        executor.update_parameters(
            nodes=1,
            tasks_per_node=params["tasks_per_node"] if cfg.slurm.gpus_per_node else 1,
            timeout_min=params["timeout_min"],
        )
    else:
        executor = submitit.AutoExecutor(
            folder=folder, cluster="slurm", slurm_max_num_timeout=cfg.slurm.max_num_timeout
        )
        executor.update_parameters(**params)
    job = executor.submit(DinoSlurmJob(to_dict(cfg)))
    logger.info("submitted job %s (logs in %s)", job.job_id, folder)
    follow_log(run_dir, lambda: not job.done(), progress, poll_s=2.0)
    job.result()  # raises submitit's FailedJobError with the job's traceback
    return LaunchResult(run_dir, "slurm", job_id=str(job.job_id), records=read_log(run_dir / "log.jsonl"))


def launch(
    cfg: TrainConfig,
    *,
    progress: bool = True,
    echo: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> LaunchResult:
    """Run ``cfg`` with its ``launcher`` and return when training has finished (or the dry run is printed).

    Args:
        cfg: the validated configuration.
        progress: show a tqdm progress bar and log one line per epoch (loss, lr, entropy, k-NN, images/s, ETA).
        echo: print the torchrun output as it arrives (it is always saved under ``RUN_DIR/launch/``); the workers
            then log the per-epoch lines themselves.
        callback: also called with every log record as it arrives (e.g. a live plot).
    """
    progress_bar = ProgressBar(progress, desc=f"pretrain ({cfg.launcher})")
    lines = EpochLines() if progress and not (echo and cfg.launcher == "torchrun") else None

    def bar(rec: dict[str, Any]) -> None:
        progress_bar(rec)
        if lines is not None:
            lines(rec)
        if callback is not None:
            callback(rec)

    try:
        if cfg.launcher == "local":
            from dino_lib.train.loop import train
            from dino_lib.utils.rundir import RunFolder

            with RunFolder(cfg.output_dir):  # one run per folder, as on the command line
                train(cfg, callback=bar, callbacks=default_callbacks(cfg))
            run_dir = Path(cfg.output_dir)
            return LaunchResult(run_dir, "local", records=read_log(run_dir / "log.jsonl"))
        if cfg.launcher == "torchrun":
            return _launch_torchrun(cfg, bar, echo)
        return _launch_slurm(cfg, bar)
    finally:
        progress_bar.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m dino_lib.launch --config FILE [key=value ...]``."""
    logging.basicConfig(level=logging.INFO)
    from dino_lib.cli import parse_config

    cfg = parse_config(TrainConfig, argv, prog="python -m dino_lib.launch",
                       description="launch DINO pretraining (local, torchrun or Slurm)")  # fmt: skip
    launch(cfg, echo=True)
    return 0


if __name__ == "__main__":
    from dino_lib.cli import entry

    sys.exit(entry(main, "python -m dino_lib.launch"))
