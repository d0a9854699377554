"""Region extraction sharded over 2 gloo processes gives the single-process result."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dino_lib.hierarchical.dataset import RegionFeatureDataset
from dino_lib.hierarchical.manifest import read_manifest


def _argv(src: Path, out: Path) -> list[str]:
    return [f"data_path={src}", f"output_dir={out}", "tile_size=64", "input_size=32", "batch_size=6",
            "precision=fp32", "device=cpu", "stacked=true",
            "fallback_encoder={depth: 1, embed_dim: 32, num_heads: 2}"]  # fmt: skip


def _worker(rank: int, world: int, port: int, src: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")  # fmt: skip
    torch.set_num_threads(1)
    from dino_lib.hierarchical.__main__ import extract_main as main

    main(_argv(Path(src), Path(out)))


@pytest.mark.ddp
def test_sharded_extraction_matches_single_process(region_folder: Path, tmp_path: Path) -> None:
    from dino_lib.hierarchical.__main__ import extract_main as main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    mp.start_processes(_worker, args=(2, port, str(region_folder), str(out)), nprocs=2, join=True, start_method="spawn")
    assert not list(out.glob("manifest.rank*.csv"))  # merged by rank 0
    single = main(_argv(region_folder, tmp_path / "single"))
    a, b = RegionFeatureDataset(out, g=4, dim=32), RegionFeatureDataset(single.manifest, g=4, dim=32)
    assert [r["region_id"] for r in a.rows] == [r["region_id"] for r in b.rows] and len(a) == 4
    torch.testing.assert_close(a.features, b.features)
    assert len(read_manifest(out / "slides" / "manifest.csv")) == 4
