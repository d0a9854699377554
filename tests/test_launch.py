"""Launching from a notebook: in-process, torchrun subprocess, Slurm dry run and submitit's local executor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dino_lib.config import load_config
from dino_lib.launch import launch, slurm_parameters, torchrun_command
from dino_lib.train.config import TrainConfig
from dino_lib.utils.io import safe_torch_load

TINY = {
    "arch": "vit_tiny",
    "arch_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2},
    "out_dim": 32,
    "head_hidden_dim": 32,
    "head_bottleneck_dim": 16,
    "epochs": 1,
    "warmup_epochs": 0,
    "batch_size_per_gpu": 4,
    "global_crops_size": 32,
    "local_crops_size": 16,
    "local_crops_number": 1,
    "precision": "fp32",
    "num_workers": 0,
    "data_path": "sample:images",
    "max_images": 8,
    "log_every": 1,
    "device": "cpu",
}


def _cfg(tmp_path: Path, **over) -> TrainConfig:
    return load_config(TrainConfig, None, dict(TINY, output_dir=str(tmp_path / "run"), **over))


def test_slurm_dry_run_prints_job(tmp_path, capsys):
    cfg = _cfg(
        tmp_path,
        launcher="slurm",
        slurm={"nodes": 2, "gpus_per_node": 8, "partition": "gpu", "time_min": 600, "dry_run": True},
    )
    res = launch(cfg, progress=False)
    out = capsys.readouterr().out
    assert "dry run" in out and '"slurm_partition": "gpu"' in out
    assert res.dry_run["parameters"]["nodes"] == 2 and res.dry_run["parameters"]["tasks_per_node"] == 8
    assert res.dry_run["parameters"]["timeout_min"] == 600
    assert not (tmp_path / "run" / "checkpoint.pth").exists()
    assert slurm_parameters(cfg)["mem_gb"] == 8 * 40


def test_torchrun_command(tmp_path):
    cmd = torchrun_command(_cfg(tmp_path, launcher="torchrun", nproc_per_node=4), "c.yaml")
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc_per_node=4" in cmd
    assert cmd[-4:] == ["-m", "dino_lib.train", "--config", "c.yaml"]
    with pytest.raises(ValueError, match="every node"):
        torchrun_command(_cfg(tmp_path, launcher="torchrun", nnodes=2), "c.yaml")


def test_launch_in_process(tmp_path):
    res = launch(_cfg(tmp_path), progress=True)
    assert res.mode == "local" and any(r["type"] == "epoch" for r in res.records)
    assert (tmp_path / "run" / "teacher_backbone.pth").is_file()


@pytest.mark.ddp
@pytest.mark.slow
def test_launch_torchrun_streams_and_finishes(tmp_path):
    res = launch(_cfg(tmp_path, launcher="torchrun", nproc_per_node=2), progress=False)
    assert res.returncode == 0 and (tmp_path / "run" / "launch" / "torchrun.log").is_file()
    assert safe_torch_load(tmp_path / "run" / "checkpoint.pth")["epoch"] == 1
    assert any(r.get("world_size") == 2 for r in res.records)


@pytest.mark.slow
def test_submitit_local_executor(tmp_path):
    cfg = _cfg(tmp_path, launcher="slurm", slurm={"executor": "local", "gpus_per_node": 0, "time_min": 10})
    res = launch(cfg, progress=False)
    assert res.job_id is not None
    assert safe_torch_load(tmp_path / "run" / "checkpoint.pth")["epoch"] == 1
    assert (tmp_path / "run" / "slurm").is_dir()


def test_launch_in_process_takes_the_run_folder_lock(tmp_path):
    from dino_lib.utils.rundir import OutputDirError, RunFolder

    cfg = _cfg(tmp_path)
    with RunFolder(cfg.output_dir), pytest.raises(OutputDirError, match="in use by another run"):
        launch(cfg, progress=False)
    assert not (tmp_path / "run" / "checkpoint.pth").exists()
