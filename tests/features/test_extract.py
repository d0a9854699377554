"""Feature extraction: dataset order, batching, loaders, bf16, sharding, distributed gathering."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, Dataset

from dino_lib.features import extract_features
from dino_lib.features.extract import _shard
from dino_lib.models import DinoVisionTransformer


class Noise(Dataset):
    """Deterministic random images with labels ``i % 3``."""

    def __init__(self, n: int, size: int = 32) -> None:
        self.images = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], i % 3


def tiny_vit() -> DinoVisionTransformer:
    torch.manual_seed(0)
    return DinoVisionTransformer(patch_size=16, embed_dim=32, depth=2, num_heads=2)


def test_features_in_dataset_order_for_any_batch_size():
    model, data = tiny_vit(), Noise(7)
    with torch.no_grad():
        direct = model.eval()(data.images)
    for batch_size in (1, 3, 7):
        out = extract_features(model, data, batch_size=batch_size, progress=False)
        assert torch.allclose(out.features, direct, atol=1e-5)
        assert out.labels.tolist() == [i % 3 for i in range(7)] and out.indices.tolist() == list(range(7))
    loader_out = extract_features(model, DataLoader(data, batch_size=2, shuffle=True), progress=False)
    assert torch.allclose(loader_out.features, direct, atol=1e-5)  # the loader's shuffling is replaced


def test_layouts_bf16_and_mode_restored():
    model, data = tiny_vit(), Noise(4)
    model.train()
    fp32 = extract_features(model, data, n_last_blocks=2, avgpool=True, progress=False)
    assert fp32.features.shape == (4, 96) and model.training
    bf16 = extract_features(model, data, n_last_blocks=2, avgpool=True, precision="bf16", progress=False)
    assert bf16.features.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(bf16.features, fp32.features).min() > 0.98


@pytest.mark.parametrize(("n", "world"), [(7, 2), (8, 4), (3, 5), (1, 2)])
def test_shards_are_equal_and_cover_everything(n: int, world: int):
    shards = [_shard(n, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    assert sorted(set(i for s in shards for i in s)) == list(range(n))


def _worker(rank: int, world: int, port: int, path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        out = extract_features(tiny_vit(), Noise(7), batch_size=2, progress=False)
        if rank == 0:
            torch.save({"features": out.features, "labels": out.labels}, path)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.ddp
def test_distributed_extraction_matches_single_process(tmp_path: Path):
    """7 items on 2 gloo processes: uneven shards, padding duplicates dropped, dataset order kept."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "gathered.pt"
    mp.start_processes(_worker, args=(2, port, str(path)), nprocs=2, join=True, start_method="spawn")
    gathered = torch.load(path, weights_only=True)
    single = extract_features(tiny_vit(), Noise(7), batch_size=2, progress=False)
    assert torch.allclose(gathered["features"], single.features, atol=1e-5)
    assert torch.equal(gathered["labels"], single.labels)
