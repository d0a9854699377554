"""k-NN monitor for pretraining: a lightweight weighted k-NN on a small labelled folder.

The training loop calls :func:`knn_monitor` every N epochs for the teacher and the student backbones and logs the
result with its metrics. The backbone is put in eval mode for the call and its mode restored afterwards. Under
``torch.distributed`` every process must call it (features are sharded and gathered); pass
``distributed=False`` to run it on one process only.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn as nn

from dino_lib.eval.data import LabelledSplits, labelled_splits
from dino_lib.eval.knn import knn_classify
from dino_lib.features.extract import extract_features
from dino_lib.features.transforms import eval_transform

__all__ = ["knn_monitor"]


@functools.lru_cache(maxsize=8)
def _splits(data_path: str, resize: int, crop: int) -> LabelledSplits:
    transform = eval_transform(resize=resize, crop=crop)
    return labelled_splits(data_path, transform, transform)


def knn_monitor(
    backbone: nn.Module,
    data_path: str | Path,
    *,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    resize: int = 256,
    crop: int = 224,
    num_workers: int = 0,
    distributed: bool | None = None,
) -> dict[str, float]:
    """Weighted k-NN accuracy of ``backbone``'s CLS features on ``data_path/{train,val}``.

    Args:
        backbone: the teacher or student backbone (DDP wrappers are unwrapped); not modified.
        data_path: folder with ``train/`` and ``val/`` class sub-folders, or ``sample:labelled``.
        k, temperature: the vote (20 and 0.07 as the reference's reported number).
        batch_size, device, precision, num_workers: extraction settings (``precision`` as in every config).
        resize, crop: evaluation transform sizes (reference 256/224; e.g. 64/56 for the small sample images).
        distributed: see :func:`dino_lib.features.extract_features`.

    Returns:
        ``{"knn_top1": %, "knn_top5": %}``.
    """
    splits = _splits(str(data_path), resize, crop)
    kwargs = {
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "num_workers": num_workers,
        "progress": False,
        "distributed": distributed,
    }
    train = extract_features(backbone, splits.train, **kwargs)
    val = extract_features(backbone, splits.val, **kwargs)
    top1, top5 = knn_classify(
        train.features,
        train.labels,
        val.features,
        val.labels,
        k=min(k, len(train.labels)),
        T=temperature,
        num_classes=len(splits.classes),
    )
    return {"knn_top1": top1, "knn_top5": top5}
