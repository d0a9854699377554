"""Pluggable training tasks: what the crops are and which backbones see them.

The loop never hard-codes images: ``cfg.task`` names an entry of :data:`TASKS`, a builder
``build(cfg: TrainConfig) -> Task`` that returns the dataset and the two backbones. ``images`` is registered here;
packages above the training layer register their own tasks with :func:`register_task` when they are imported
(``import dino_lib.hierarchical`` registers ``regions``), so training never imports them.
Dataset items are ``(list of crop tensors, anything)`` with the global crops first, then the local crops, or, for a
task with a ``device_transform``, ``(anything collatable, anything)``: the loop then hands each collated batch (or
gradient-accumulation micro-batch) to ``device_transform(batch, device)``, which returns the crop list on the device
(``augmentation: batched``). Any randomness in the dataset must come from the torch RNG (the loop seeds it per
sample for exact resumption); a device transform must be deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from dino_lib.train.config import TrainConfig

__all__ = ["Task", "TASKS", "TaskBuilder", "build_task", "build_image_task", "register_task"]


@dataclass
class Task:
    """What a training run consumes.

    Attributes:
        dataset: items ``([global_1, global_2, local_1, ...], label)``.
        collate_fn: batch collation (None = PyTorch's default: a list of ``(B, ...)`` tensors per crop).
        student_backbone: built with the student's drop-path rate.
        teacher_backbone: same architecture, no drop path (its weights are overwritten by the student's).
        embed_dim: backbone output size (the head's input).
        n_global_crops: 2.
        n_local_crops: number of local crops per item.
        device_transform: ``(collated batch, device) -> [global_1, global_2, local_1, ...]`` on the device, for
            datasets whose items are not yet crops (None: the items are the crops).
    """

    dataset: Dataset
    collate_fn: Callable[[list[Any]], Any] | None
    student_backbone: nn.Module
    teacher_backbone: nn.Module
    embed_dim: int
    n_global_crops: int
    n_local_crops: int
    device_transform: Callable[[Any, torch.device], list[torch.Tensor]] | None = None


TaskBuilder = Callable[["TrainConfig"], Task]

#: Registered training tasks: name -> builder. Filled by :func:`register_task`.
TASKS: dict[str, TaskBuilder] = {}

# Tasks that live in packages above training: the import that registers them, for the unknown-task error.
_REGISTERED_ON_IMPORT = {"regions": "import dino_lib.hierarchical first (python -m dino_lib.train and "
                                    "python -m dino_lib.launch do)"}  # fmt: skip


def register_task(name: str, builder: TaskBuilder) -> TaskBuilder:
    """Register ``builder`` as the training task ``name`` (``task: <name>`` in a training config).

    Registering the same builder again is a no-op (modules may be re-imported); another builder under a taken name is
    an error. Returns ``builder``.
    """
    if TASKS.get(name, builder) is not builder:
        raise ValueError(f"training task {name!r} is already registered ({TASKS[name].__module__})")
    TASKS[name] = builder
    return builder


def build_task(cfg: TrainConfig) -> Task:
    """Call the builder registered under ``cfg.task``.

    Raises:
        ValueError: ``cfg.task`` is not registered (the message lists the registered tasks), or the task does not
            have 2 global crops.
    """
    if cfg.task not in TASKS:
        hint = f" ({_REGISTERED_ON_IMPORT[cfg.task]})" if cfg.task in _REGISTERED_ON_IMPORT else ""
        raise ValueError(f"task: unknown task {cfg.task!r}{hint}; registered tasks: {', '.join(sorted(TASKS))}")
    task = TASKS[cfg.task](cfg)
    if task.n_global_crops != 2:
        raise ValueError(f"task {cfg.task!r}: DINO needs exactly 2 global crops, found {task.n_global_crops}")
    return task


def build_backbone_pair(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """Student (drop path ``cfg.drop_path_rate``) and teacher (drop path 0) backbones for ``cfg.arch``."""
    from dino_lib.models import BackboneSpec, build_and_load

    kwargs = dict(cfg.arch_kwargs)
    patch = None if cfg.arch.startswith("timm:") else cfg.patch_size  # timm names keep their own patch size
    student_kw = dict(kwargs, drop_path_rate=cfg.drop_path_rate) if cfg.is_vit else kwargs
    teacher_kw = dict(kwargs, drop_path_rate=0.0) if cfg.is_vit else kwargs
    student, _ = build_and_load(BackboneSpec(cfg.arch, patch_size=patch, kwargs=student_kw), warn_random=False)
    teacher, _ = build_and_load(BackboneSpec(cfg.arch, patch_size=patch, kwargs=teacher_kw), warn_random=False)
    return student, teacher


def build_image_task(cfg: TrainConfig) -> Task:
    """Multi-crop DINO on an image folder (``cfg.data_path``, ``sample:<name>`` allowed)."""
    from torch.utils.data import Subset

    from dino_lib.data.image_folder import ImageDataset
    from dino_lib.data.samples import resolve_data_path

    transform, device_transform = _image_augmentation(cfg)
    root = resolve_data_path(cfg.data_path)
    dataset: Dataset = ImageDataset(root, transform, check=cfg.check_images, skip_corrupt=cfg.skip_corrupt_images)
    if cfg.max_images is not None and cfg.max_images < len(dataset):  # type: ignore[arg-type]
        dataset = Subset(dataset, range(cfg.max_images))
    student, teacher = build_backbone_pair(cfg)
    return Task(dataset, None, student, teacher, int(student.embed_dim), 2, cfg.local_crops_number, device_transform)


def _image_augmentation(cfg: TrainConfig) -> tuple[Callable[[Any], Any], Any]:
    """``(dataset transform, device transform or None)`` for ``cfg.augmentation``: ``pil`` makes the crops in the
    dataset; ``batched`` draws the parameters there and makes the crops of a batch on the device."""
    from dino_lib.data.normalization import NORMALIZATIONS

    mean, std = NORMALIZATIONS[cfg.normalization]
    crops = dict(
        global_crops_scale=cfg.global_crops_scale,
        local_crops_scale=cfg.local_crops_scale,
        local_crops_number=cfg.local_crops_number,
        global_crops_size=cfg.global_crops_size,
        local_crops_size=cfg.local_crops_size,
    )
    if cfg.augmentation == "batched":
        from dino_lib.data.batch_augment import BatchedMultiCrop
        from dino_lib.data.crop_params import MultiCropParams, crop_specs

        specs = crop_specs(**crops)
        return MultiCropParams(specs, cfg.base_size), BatchedMultiCrop(specs, mean, std)
    if cfg.augmentation != "pil":
        raise ValueError(f"augmentation: expected pil or batched, found {cfg.augmentation!r}")
    from dino_lib.data.augment import DataAugmentationDINO

    return DataAugmentationDINO(**crops, mean=mean, std=std), None


register_task("images", build_image_task)
