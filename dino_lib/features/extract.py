"""Frozen-backbone feature extraction for evaluation (docs/evaluation.md).

:func:`extract_features` runs a backbone in eval mode over a dataset (or a loader's dataset), batched, with
optional bf16 autocast, and returns the features **in dataset order**. Under ``torch.distributed`` each process
takes a strided shard padded with duplicates to equal length (as ``DistributedSampler(shuffle=False)``); every step
all-gathers features, labels and dataset indices, and every process writes them by index into the full bank, so
padding duplicates simply overwrite their own row.

Feature layouts (:func:`linear_features`), for ``n = n_last_blocks`` final-normed block outputs, oldest first:

* ``n = 1``, no avgpool: the final-normed CLS token, i.e. ``backbone(x)`` (the k-NN feature; pooled 2048-d for
  ResNet-50);
* CLS tokens of the last ``n`` blocks concatenated, oldest block first -> ``n * D``;
* ``avgpool``: plus the mean of the last block's patch tokens (prefix tokens excluded) -> ``(n + 1) * D``, either
  appended (``[cls_1 ... cls_n ; avg]``, works for any ``n``) or, with ``interleave=True``, the reference's
  per-channel interleaving ``[cls_0, avg_0, cls_1, avg_1, ...]`` which only exists for ``n = 1``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from dino_lib.runtime import (
    autocast,
    get_rank,
    get_world_size,
    is_distributed,
    legacy_precision,
    resolve_device,
    resolve_precision,
)

logger = logging.getLogger(__name__)

__all__ = ["ExtractedFeatures", "linear_features", "backbone_features", "extract_features", "resolve_device"]


class ExtractedFeatures(NamedTuple):
    """Features ``(N, F)`` float32, labels ``(N,)`` int64 (-1 when the dataset has none), indices ``(N,)``."""

    features: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(getattr(model, "module", None), nn.Module) else model


def linear_features(
    blocks: Sequence[torch.Tensor], *, avgpool: bool = False, interleave: bool = False, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Combine final-normed block outputs ``[(B, T, D)] * n`` (oldest first) into one feature per image.

    Returns:
        ``(B, n*D)`` CLS concatenation, or ``(B, (n+1)*D)`` with ``avgpool`` (see the module docstring).

    Raises:
        ValueError: ``interleave`` with ``n > 1`` (the reference layout is undefined there).
    """
    cls = torch.cat([b[:, 0] for b in blocks], dim=-1)  # (B, n*D)
    if not avgpool:
        return cls
    avg = blocks[-1][:, num_prefix_tokens:].mean(dim=1)  # (B, D) mean over patch tokens of the last block
    if interleave:
        if len(blocks) != 1:
            raise ValueError(
                "the interleaved CLS/avgpool layout of the reference exists only for n_last_blocks=1, "
                f"got {len(blocks)}; "
                "use interleave=False for the appended layout [cls_1 ... cls_n ; avg]"
            )
        return torch.stack([cls, avg], dim=-1).flatten(1)  # (B, 2D): cls_0, avg_0, cls_1, avg_1, ...
    return torch.cat([cls, avg], dim=-1)  # (B, (n+1)*D)


def backbone_features(
    backbone: nn.Module,
    images: torch.Tensor,
    *,
    n_last_blocks: int = 1,
    avgpool: bool = False,
    interleave: bool = False,
) -> torch.Tensor:
    """One batch of features from a frozen backbone (no grad handling here; the caller decides)."""
    model = _unwrap(backbone)
    if n_last_blocks == 1 and not avgpool:
        return model(images)  # final-normed CLS for our ViTs, pooled feature for CNNs
    if not hasattr(model, "get_intermediate_layers") or not hasattr(model, "prepare_tokens"):
        raise ValueError(
            f"{type(model).__name__} has no DINO get_intermediate_layers; n_last_blocks > 1 and avgpool need a "
            "dino_lib ViT (build_backbone('vit_small', ...)); use n_last_blocks=1, avgpool=False for other backbones"
        )
    blocks = model.get_intermediate_layers(images, n=n_last_blocks)
    return linear_features(
        blocks, avgpool=avgpool, interleave=interleave, num_prefix_tokens=getattr(model, "num_prefix_tokens", 1)
    )


class _Indexed(Dataset):
    """Items ``(image, label, index)`` of a subset of ``base`` (label -1 for unlabelled datasets)."""

    def __init__(self, base: Dataset, indices: list[int]) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int, int]:
        index = self.indices[i]
        item = self.base[index]
        if isinstance(item, tuple | list) and len(item) >= 2:
            return item[0], int(item[1]), index
        return item, -1, index


def _shard(n: int, rank: int, world: int) -> list[int]:
    """Strided shard padded with the first indices so every rank holds ``ceil(n / world)`` items."""
    per_rank = math.ceil(n / world)
    order = list(range(n))
    while len(order) < per_rank * world:  # more ranks than items: repeat as often as needed
        order += order[: per_rank * world - len(order)]
    return order[rank::world]


def _gather(tensor: torch.Tensor, world: int, comm_device: torch.device) -> torch.Tensor:
    local = tensor.to(comm_device).contiguous()
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local)
    return torch.cat(parts).cpu()


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    data: Dataset | DataLoader,
    *,
    n_last_blocks: int = 1,
    avgpool: bool = False,
    interleave: bool = False,
    precision: str = "fp32",
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = True,
    distributed: bool | None = None,
    desc: str = "features",
    amp: bool | None = None,
) -> ExtractedFeatures:
    """Features of every item of ``data`` in dataset order.

    Args:
        backbone: frozen backbone (a DDP wrapper is unwrapped); put in eval mode for the call, mode restored after.
        data: a dataset of ``(image, label)`` or images, or a DataLoader (its dataset, batch size, workers and
            collate function are used; its sampler is replaced by the ordered, sharded one).
        n_last_blocks, avgpool, interleave: the layout (see :func:`linear_features`).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (resolved by :func:`dino_lib.runtime.resolve_precision`);
            features are returned in fp32. The reference extracts in fp32.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``; the backbone is moved there.
        batch_size, num_workers: loader settings when ``data`` is a dataset.
        progress: show a tqdm bar (rank 0 only).
        distributed: shard and all-gather across processes; ``None`` = when a process group of size > 1 exists.
            Every process must call this function then.
        amp: deprecated (``True`` = ``precision="bf16"``).

    Returns:
        :class:`ExtractedFeatures` on the CPU, identical on every process.
    """
    device = resolve_device(device)
    if amp is not None:
        warnings.warn("extract_features(amp=...) is deprecated; pass precision='bf16'|'fp32'", FutureWarning, 2)
        precision = legacy_precision("amp", bool(amp))
    precision = resolve_precision(precision, device)
    use_dist = distributed if distributed is not None else is_distributed()
    rank, world = (get_rank(), get_world_size()) if use_dist else (0, 1)
    loader, n = _sharded_loader(data, batch_size, num_workers, rank, world, pin_memory=device.type == "cuda")
    comm_device = torch.device("cpu")  # gloo gathers CPU tensors; NCCL needs the process's current CUDA device
    if use_dist and dist.get_backend() == "nccl":
        comm_device = torch.device("cuda", torch.cuda.current_device())
    layout = {"n_last_blocks": n_last_blocks, "avgpool": avgpool, "interleave": interleave}
    model = backbone.to(device)
    was_training = model.training
    model.eval()
    try:
        return _encode_all(
            model, loader, n, layout, device, precision, world if use_dist else 0, comm_device, desc,
            show=progress and rank == 0,
        )  # fmt: skip
    finally:
        model.train(was_training)


def _sharded_loader(
    data: Dataset | DataLoader, batch_size: int, num_workers: int, rank: int, world: int, *, pin_memory: bool
) -> tuple[DataLoader, int]:
    """An ordered loader over this process's shard of ``data`` (a DataLoader's settings are kept), and the size."""
    collate = None
    if isinstance(data, DataLoader):
        dataset, batch_size, num_workers, collate = (
            data.dataset,
            data.batch_size or batch_size,
            data.num_workers,
            data.collate_fn,
        )
    else:
        dataset = data
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("extract_features: the dataset is empty")
    loader_kwargs: dict[str, Any] = {
        "batch_size": batch_size,
        "shuffle": False,
        "num_workers": num_workers,
        "pin_memory": pin_memory,
    }
    if collate is not None:
        loader_kwargs["collate_fn"] = collate
    return DataLoader(_Indexed(dataset, _shard(n, rank, world)), **loader_kwargs), n


def _encode_all(
    model: nn.Module,
    loader: DataLoader,
    n: int,
    layout: dict[str, Any],
    device: torch.device,
    precision: str,
    gather_world: int,
    comm_device: torch.device,
    desc: str,
    show: bool,
) -> ExtractedFeatures:
    """Encode every batch and place it at its dataset indices; ``gather_world`` > 0 all-gathers across ranks."""
    from tqdm.auto import tqdm

    bank: torch.Tensor | None = None
    labels = torch.full((n,), -1, dtype=torch.int64)
    quiet = {} if show else {"disable": True}  # when shown, TQDM_DISABLE can still switch it off
    for images, batch_labels, batch_idx in tqdm(loader, desc=desc, **quiet):
        images = images.to(device, non_blocking=True)
        with autocast(device, precision):
            feats = backbone_features(model, images, **layout)
        feats = feats.float()  # (b, F)
        batch_labels = torch.as_tensor(batch_labels, dtype=torch.int64)
        batch_idx = torch.as_tensor(batch_idx, dtype=torch.int64)
        if gather_world:  # every rank has the same number of equal-sized batches (padded shards)
            feats = _gather(feats, gather_world, comm_device)  # (world*b, F)
            batch_labels = _gather(batch_labels, gather_world, comm_device)
            batch_idx = _gather(batch_idx, gather_world, comm_device)
        if bank is None:
            bank = torch.zeros(n, feats.shape[-1], dtype=torch.float32)
        bank[batch_idx] = feats.cpu()
        labels[batch_idx] = batch_labels
    assert bank is not None
    return ExtractedFeatures(bank, labels, torch.arange(n))
