"""Device names: auto, cpu, cuda, cuda:N; clear errors for the rest and for CUDA on a machine without it."""

from __future__ import annotations

import pytest
import torch

from dino_lib.runtime import DeviceError, cuda_available, env_dist_info, resolve_device, setup_process


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if cuda_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "cuda:-1", ""])
def test_unknown_names_are_refused(name):
    with pytest.raises(DeviceError, match=r"device: expected auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@pytest.mark.skipif(cuda_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_says_so(name):
    with pytest.raises(DeviceError, match="CUDA is not usable.*use device: cpu"):
        resolve_device(name)


def test_ranks_come_from_the_launcher_environment(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert env_dist_info().world_size == 1 and not env_dist_info().distributed
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = env_dist_info()
    assert (info.rank, info.world_size, info.local_rank) == (3, 4, 1)
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(RuntimeError, match="RANK='three' is not an integer"):
        env_dist_info()


def test_setup_process_alone_is_one_cpu_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    device, info = setup_process("cpu")
    assert device == torch.device("cpu") and info.world_size == 1 and info.rank == 0
