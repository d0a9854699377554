"""Multi-process training on CPU with gloo: torchrun on one node, a two-node run simulated on one machine,
and a dying worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dino_lib.distributed import DistInfo, all_reduce_mean, get_world_size, init_distributed
from dino_lib.utils.io import safe_torch_load

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "tests" / "train" / "fault_runner.py"
TINY = {
    "arch": "vit_tiny",
    "arch_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    "out_dim": 64,
    "head_hidden_dim": 32,
    "head_bottleneck_dim": 16,
    "epochs": 2,
    "warmup_epochs": 1,
    "batch_size_per_gpu": 4,
    "lr": 0.01,
    "global_crops_size": 32,
    "local_crops_size": 16,
    "local_crops_number": 2,
    "precision": "fp32",
    "num_workers": 0,
    "data_path": "sample:images",
    "max_images": 16,
    "log_every": 1,
    "saveckp_freq": 1,
    "device": "cpu",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp: Path, name: str, **over) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(TINY, output_dir=str(tmp / name), **over)))
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == DistInfo(0, 1, 0)
    assert get_world_size() == 1
    assert torch.equal(all_reduce_mean(torch.tensor([2.0])), torch.tensor([2.0]))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        init_distributed("cpu")


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_and_simulated_two_node_runs_agree(tmp_path):
    cfg1 = _config(tmp_path, "single")
    cmd = _torchrun("--standalone", "--nproc_per_node=2", "-m", "dino_lib.train", "--config", str(cfg1))
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    single = safe_torch_load(tmp_path / "single" / "checkpoint.pth")
    assert single["epoch"] == 2 and single["config"]["output_dir"].endswith("single")

    cfg2 = _config(tmp_path, "nodes")
    port = _free_port()
    procs = [
        subprocess.Popen(
            _torchrun(
                "--nnodes=2",
                "--nproc_per_node=1",
                f"--node_rank={rank}",
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint=127.0.0.1:{port}",
                "--rdzv_id=dino-test",
                "-m",
                "dino_lib.train",
                "--config",
                str(cfg2),
            ),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    run = tmp_path / "nodes"
    assert sorted(p.name for p in run.glob("checkpoint*.pth")) == [
        "checkpoint.pth",
        "checkpoint0000.pth",
        "checkpoint0001.pth",
    ]
    assert not list(run.glob(".checkpoint*.tmp"))  # one writer: no concurrent temporaries left
    nodes = safe_torch_load(run / "checkpoint.pth")
    for part in ("student", "teacher"):
        for k, v in single[part].items():
            assert torch.allclose(v, nodes[part][k], atol=1e-6), f"{part}.{k}"
    assert torch.allclose(single["dino_loss"]["center"], nodes["dino_loss"]["center"], atol=1e-6)


@pytest.mark.ddp
@pytest.mark.slow
def test_dead_worker_fails_the_job_promptly(tmp_path):
    cfg = _config(tmp_path, "dies", epochs=2)
    cmd = _torchrun("--standalone", "--nproc_per_node=2", str(RUNNER), str(cfg), "kill_at_iter", "1")
    start = time.monotonic()
    proc = subprocess.run(cmd, env=dict(_env(), FAULT_RANK="1"), capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode != 0
    assert time.monotonic() - start < 120


def test_resolve_device_is_the_one_device_check(monkeypatch):
    from dino_lib.config import ConfigError
    from dino_lib.distributed import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("tpu", "cpu:1", "cuda:x", "gpu"):
        with pytest.raises(ConfigError, match=r"device: expected auto, cpu, cuda or cuda:N") as info:
            resolve_device(bad)
        assert info.value.key == "device"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the answer on a machine without a GPU
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"device: 'cuda:1' requested but CUDA is not usable .* use device: cpu"):
        resolve_device("cuda:1")


def test_torchrun_workers_exit_when_the_launcher_is_killed(tmp_path):
    """A worker started with TORCHELASTIC_RUN_ID dies with its parent (here a stand-in for a kill -9'd torchrun)."""
    pid_file = tmp_path / "child.pid"
    child = (
        "import os, time, pathlib; from dino_lib.distributed import exit_with_launcher; exit_with_launcher(); "
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(120)"
    )
    parent = (
        "import os, subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {child!r}], env={{**os.environ, 'TORCHELASTIC_RUN_ID': 't'}}); "
        "time.sleep(120)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env)
    try:
        deadline = time.time() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.2)
        child_pid = int(pid_file.read_text())
        proc.kill()  # SIGKILL: the parent gets no chance to stop its child
        proc.wait()
        deadline = time.time() + 20
        while Path(f"/proc/{child_pid}").exists() and "zombie" not in _state(child_pid):
            assert time.time() < deadline, "the worker outlived its launcher"
            time.sleep(0.2)
    finally:
        proc.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"
