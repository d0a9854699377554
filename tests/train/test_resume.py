"""Kill-and-resume: a run killed during epoch 2 (or during a checkpoint write) and resumed ends bitwise equal to
an uninterrupted run (CPU, fp32). Subprocesses with OMP_NUM_THREADS=1 so every run uses the same kernels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dino_lib.utils.io import safe_torch_load

from .conftest import TINY

RUNNER = Path(__file__).with_name("fault_runner.py")
pytestmark = pytest.mark.slow


def _run(tmp: Path, name: str, mode: str = "none", arg: int = 0, **over) -> tuple[int, Path]:
    run_dir = tmp / name
    cfg = dict(TINY, output_dir=str(run_dir), epochs=3, max_images=16, checkpoint_every_iters=2, **over)
    cfg_path = tmp / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(RUNNER), str(cfg_path), mode, str(arg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, run_dir


def _weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpt = safe_torch_load(run_dir / "checkpoint.pth")
    assert ckpt["epoch"] == 3
    return {"student": ckpt["student"], "teacher": ckpt["teacher"], "center": ckpt["dino_loss"]}


def _assert_bitwise(a, b):
    for part in a:
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    rc, run_dir = _run(tmp, "ref")
    assert rc == 0
    reference_epochs.update({r["epoch"]: r for r in _epochs(run_dir)})
    return _weights(run_dir)


reference_epochs: dict[int, dict] = {}


def _epochs(run_dir: Path) -> list[dict]:
    from dino_lib.train.monitors import read_log

    return [r for r in read_log(run_dir / "log.jsonl") if r.get("type") == "epoch"]


@pytest.mark.parametrize("kill_it", [5, 6])  # 4 iterations/epoch: 5 = mid-epoch 2 after a mid-epoch checkpoint
def test_killed_during_epoch_2_resumes_bitwise(tmp_path, reference, kill_it):
    rc, run_dir = _run(tmp_path, "killed", "kill_at_iter", kill_it)
    assert rc == -signal.SIGKILL
    ckpt = safe_torch_load(run_dir / "checkpoint.pth")
    assert (ckpt["epoch"], ckpt["iteration_in_epoch"]) == ((1, 0) if kill_it == 5 else (1, 2))
    rc, run_dir = _run(tmp_path, "killed")  # same directory: automatic resume
    assert rc == 0
    _assert_bitwise(reference, _weights(run_dir))
    for record in _epochs(run_dir):  # the interrupted epoch's means cover all its iterations, across the resume
        ref = reference_epochs[record["epoch"]]
        assert record["iterations"] == ref["iterations"] == 4
        for key in ("train_loss", "teacher_entropy", "train_lr"):
            assert record[key] == pytest.approx(ref[key], rel=1e-6), (record["epoch"], key)


def test_kill_during_checkpoint_write_keeps_previous(tmp_path, reference):
    # torch.save calls: epoch 0 -> checkpoint.pth, checkpoint0000.pth, teacher export (mid-epoch ckpt first: 1)
    # with checkpoint_every_iters=2 and 4 iterations/epoch: call 1 = mid-epoch 0, 2-4 = end of epoch 0,
    # 5 = mid-epoch 1 -> killed half-way through writing it.
    rc, run_dir = _run(tmp_path, "torn", "kill_in_save", 5)
    assert rc == -signal.SIGKILL
    ckpt = safe_torch_load(run_dir / "checkpoint.pth")  # the previous checkpoint is intact and loadable
    assert (ckpt["epoch"], ckpt["iteration_in_epoch"]) == (1, 0)
    assert list(run_dir.glob(".checkpoint.pth.*.tmp"))  # the torn temporary file...
    rc, run_dir = _run(tmp_path, "torn")
    assert rc == 0
    _assert_bitwise(reference, _weights(run_dir))
    assert not list(run_dir.glob(".*.tmp"))  # ...is removed when the run restarts
