"""k-NN monitor for pretraining: a lightweight weighted k-NN on a small labelled folder.

:class:`KnnMonitor` is the training callback that runs :func:`knn_monitor` every ``knn_every`` epochs for the
teacher and the student backbones (and once at initialisation, the ``knn_init`` event), so the loop logs the result
with the epoch's metrics; :func:`dino_lib.launch.default_callbacks` builds the callbacks a training configuration
asks for.
The backbone is put in eval mode for the call and its mode restored afterwards. Under ``torch.distributed`` every
process must call :func:`knn_monitor` (features are sharded and gathered); pass ``distributed=False`` to run it on
one process only.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from dino_lib.data.labelled import LabelledSplits, labelled_splits
from dino_lib.eval.knn import knn_classify
from dino_lib.features.extract import extract_features
from dino_lib.features.transforms import eval_transform
from dino_lib.train.callbacks import TrainCallback, TrainState

if TYPE_CHECKING:
    from dino_lib.train.config import TrainConfig

__all__ = ["knn_monitor", "KnnMonitor"]


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


class KnnMonitor(TrainCallback):
    """The pretraining k-NN monitor as a training callback (rank 0, ``distributed=False``).

    At the start of a new run it logs the event ``knn_init`` (the teacher, equal to the student, at
    initialisation: the baseline later numbers are read against); after every ``every``-th epoch it adds
    ``knn_teacher_top1``, ``knn_teacher_top5``, ``knn_student_top1`` and ``knn_student_top5`` to the epoch record.

    Args:
        data_path: labelled folder (``train/`` and ``val/``) or ``sample:labelled``.
        every: epochs between two measurements.
        resize, crop: evaluation transform sizes.
    """

    def __init__(self, data_path: str | Path, *, every: int, resize: int = 256, crop: int = 224) -> None:
        self.data_path, self.every, self.resize, self.crop = data_path, every, resize, crop

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> KnnMonitor:
        """The monitor of ``knn_every``, ``knn_data_path``, ``knn_resize`` and ``knn_crop``."""
        return cls(cfg.knn_data_path, every=cfg.knn_every, resize=cfg.knn_resize, crop=cfg.knn_crop)

    def measure(self, state: TrainState) -> dict[str, float]:
        out = {}
        for name, net in (("teacher", state.teacher), ("student", state.student)):
            res = knn_monitor(
                net.backbone,
                self.data_path,
                device=state.device,
                precision=state.precision,
                resize=self.resize,
                crop=self.crop,
                distributed=False,
            )
            out.update({f"knn_{name}_{k.removeprefix('knn_')}": float(v) for k, v in res.items()})
        return out

    def on_train_start(self, state: TrainState) -> None:
        if state.epoch == 0 and state.iteration_in_epoch == 0:  # a new run, not a resumed one
            state.emit({"type": "event", "event": "knn_init", **self.measure(state)})

    def on_epoch_end(self, state: TrainState) -> dict[str, float] | None:
        return self.measure(state) if (state.epoch + 1) % self.every == 0 else None
