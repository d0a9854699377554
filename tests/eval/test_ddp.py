"""``torchrun --nproc_per_node 2 -m dino_lib.eval`` on CPU (gloo): distributed extraction and DDP linear probe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.ddp
def test_eval_under_torchrun_matches_single_process(labelled_folder: Path, tmp_path: Path):
    common = [
        f"data_path={labelled_folder}",
        "arch=vit_tiny",
        "depth=2",
        "resize=64",
        "crop=56",
        "num_workers=0",
        "device=cpu",
        "nb_knn=[5,20]",
        "epochs=2",
        "lr=0.5",
        "batch_size_per_gpu=8",
        "n_last_blocks=1",
        "avgpool_patchtokens=true",
    ]
    with socket.socket() as sock:  # a free port (torchrun's --master_port 0 does not pick one)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    runs = {}
    for name, launcher in (
        ("single", [sys.executable, "-m", "dino_lib.eval"]),
        (
            "ddp",
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "--master_port",
                str(port),
                "-m",
                "dino_lib.eval",
            ],
        ),
    ):
        out = tmp_path / name
        proc = subprocess.run(
            [*launcher, *common, f"output_dir={out}"], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs[name] = (
            json.loads((out / "knn_results.json").read_text()),
            json.loads((out / "linear_results.json").read_text()),
        )
    assert runs["ddp"][0]["knn"] == runs["single"][0]["knn"]  # same features gathered in dataset order
    linear = runs["ddp"][1]["linear"]
    assert linear["lr"] == pytest.approx(0.5 * 8 * 2 / 256)  # lr scaled by batch x world / 256
    assert len(linear["history"]) == 2 and 0.0 <= linear["best_acc"] <= 100.0
