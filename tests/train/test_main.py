"""``python -m dino_lib.train``: a line per epoch, and launch keys obeyed (re-launch or refuse, never one process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dino_lib.train.__main__ import main
from dino_lib.train.monitors import read_log
from tests.train.conftest import TINY


def _config(tmp_path: Path, **over) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(dict(TINY, output_dir=str(tmp_path / "run"), **over)))
    return path


def test_command_line_logs_one_line_per_epoch(tmp_path: Path):
    cfg = _config(tmp_path, epochs=2, knn_every=1, knn_data_path="sample:labelled", knn_resize=40, knn_crop=32)
    env = dict(os.environ, TQDM_DISABLE="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "dino_lib.train", "--config", str(cfg)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if re.search(r"epoch \d/2, loss", line)]
    assert len(lines) == 2, proc.stderr[-3000:]
    for line in lines:
        assert "lr " in line and "teacher entropy" in line and "k-NN top-1" in line and "img/s" in line
        assert "ETA" in line
    assert "done: 2 epochs" in proc.stdout


def test_multinode_torchrun_config_stops_with_the_command(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = _config(tmp_path, launcher="torchrun", nproc_per_node=8, nnodes=2)
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    command = re.search(r"torchrun --nnodes 2 --nproc_per_node 8 .* -m dino_lib\.train --config (\S+)", err)
    assert command, err
    assert yaml.safe_load(Path(command.group(1)).read_text())["nnodes"] == 2  # the resolved config it names
    assert not (tmp_path / "run" / "checkpoint.pth").exists(), "trained one process instead of stopping"


def test_slurm_config_is_handed_to_the_launcher(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = _config(tmp_path, launcher="slurm")
    assert main(["--config", str(cfg), "slurm.dry_run=true", "slurm.nodes=2"]) == 0
    out = capsys.readouterr().out
    assert "Slurm job (dry run, nothing submitted)" in out and '"nodes": 2' in out
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


@pytest.mark.ddp
@pytest.mark.slow
def test_single_node_torchrun_config_relaunches_through_torchrun(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = _config(tmp_path, epochs=1, warmup_epochs=0, launcher="torchrun", nproc_per_node=2)
    assert main(["--config", str(cfg)]) == 0
    records = read_log(tmp_path / "run" / "log.jsonl")
    assert any(r.get("event") == "start" and r.get("world_size") == 2 for r in records), "did not run 2 processes"
    assert (tmp_path / "run" / "launch" / "torchrun.log").is_file()
