"""Build everything a run needs from a TrainConfig: models, loader, schedules, loss, optimiser (setup step).

Derived values (scaled LR, iterations per epoch, schedules) are computed here once (style rule 2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from dino_lib.data.image_folder import SeededCrops
from dino_lib.losses.dino_loss import DINOLoss
from dino_lib.models.head import DINOHead
from dino_lib.models.multicrop import MultiCropWrapper
from dino_lib.runtime import DistInfo, grad_scaler, resolve_precision, seed_everything
from dino_lib.train.config import TrainConfig
from dino_lib.train.ema import EMA
from dino_lib.train.optim import build_optimizer, get_params_groups
from dino_lib.train.sampler import ResumableDistributedSampler
from dino_lib.train.schedules import cosine_schedule, scaled_lr
from dino_lib.train.tasks import Task, build_task

logger = logging.getLogger(__name__)

__all__ = ["RunParts", "build_run", "seed_everything", "make_loader"]


@dataclass
class RunParts:
    """The objects of one run (``student``/``teacher`` are un-wrapped; ``student_ddp`` is what runs forward)."""

    task: Task
    dataset: SeededCrops
    sampler: ResumableDistributedSampler
    student: MultiCropWrapper
    teacher: MultiCropWrapper
    student_ddp: nn.Module
    ema: EMA
    dino_loss: DINOLoss
    optimizer: torch.optim.Optimizer
    scaler: Any
    lr_schedule: np.ndarray
    wd_schedule: np.ndarray
    momentum_schedule: np.ndarray
    niter_per_ep: int
    peak_lr: float
    precision: str = "fp32"  # resolved from cfg.precision for this device (dino_lib.runtime)


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def make_loader(parts: RunParts, cfg: TrainConfig, device: torch.device, epoch: int) -> DataLoader:
    """A fresh loader per epoch: workers see the epoch's seed, and the generator keeps the global RNG untouched."""
    return DataLoader(
        parts.dataset,
        batch_size=cfg.batch_size_per_gpu,
        sampler=parts.sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        collate_fn=parts.task.collate_fn,
        generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
    )


def _init_student(student: MultiCropWrapper, cfg: TrainConfig, rank: int) -> torch.Tensor | None:
    """Continued pretraining: load ``cfg.init_weights`` into the student (the teacher then copies it).

    Skipped when the run directory already holds ``checkpoint.pth``: the run resumes from its own state instead.
    Returns the checkpoint's loss centre when ``init_head`` brought one.
    """
    if not cfg.init_weights:
        return None
    if (Path(cfg.output_dir) / "checkpoint.pth").is_file():
        if rank == 0:
            logger.info("init_weights ignored: %s resumes from its own checkpoint.pth", cfg.output_dir)
        return None
    from dino_lib.train.init_weights import init_from_checkpoint

    report, center = init_from_checkpoint(
        student, cfg.init_weights, checkpoint_key=cfg.init_checkpoint_key, init_head=cfg.init_head
    )
    if rank == 0:
        logger.info("started from %s%s", report, " (+ head)" if cfg.init_head else "")
    return center


def _enable_grad_checkpointing(backbone: nn.Module, arch: str) -> None:
    """timm's ``set_grad_checkpointing``: block activations are recomputed in the backward instead of stored."""
    if not hasattr(backbone, "set_grad_checkpointing"):
        raise ValueError(
            f"grad_checkpointing: the backbone {arch!r} has no set_grad_checkpointing(); it works with the DINO ViTs "
            "(vit_tiny/small/base) and timm models. Set grad_checkpointing: false, or save memory with accumulate_steps"
        )
    backbone.set_grad_checkpointing(True)


def build_run(cfg: TrainConfig, info: DistInfo, device: torch.device) -> RunParts:
    """Task, student/teacher, DDP, sampler, schedules, loss, optimiser and scaler for ``cfg``."""
    seed_everything(cfg.seed)
    task = build_task(cfg)
    n = len(task.dataset)  # type: ignore[arg-type]
    global_batch = cfg.batch_size_per_gpu * info.world_size
    if n < global_batch:
        raise ValueError(
            f"{cfg.data_path}: {n} images, fewer than one global batch of {global_batch} "
            f"(batch_size_per_gpu {cfg.batch_size_per_gpu} x {info.world_size} processes); lower batch_size_per_gpu "
            "or add images"
        )
    dataset = SeededCrops(task.dataset, seed=cfg.seed)
    sampler = ResumableDistributedSampler(n, info.world_size, info.rank, cfg.batch_size_per_gpu, seed=cfg.seed)
    student, teacher, student_ddp, init_center = _build_networks(cfg, task, info, device)
    niter = sampler.batches_per_epoch
    peak_lr = scaled_lr(cfg.lr, cfg.batch_size_per_gpu, info.world_size)
    lr_schedule = cosine_schedule(peak_lr, cfg.min_lr, cfg.epochs, niter, warmup_epochs=cfg.warmup_epochs)
    wd_schedule = cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, cfg.epochs, niter)
    momentum_schedule = cosine_schedule(cfg.momentum_teacher, 1.0, cfg.epochs, niter)
    dino_loss = _build_loss(cfg, task, device, init_center)
    optimizer = build_optimizer(cfg.optimizer, get_params_groups(student))
    precision = resolve_precision(cfg.precision, device)
    scaler = grad_scaler(device, precision)
    if info.rank == 0:
        _log_settings(cfg, n, niter, global_batch, peak_lr, precision)
    return RunParts(
        task,
        dataset,
        sampler,
        student,
        teacher,
        student_ddp,
        EMA(student, teacher),
        dino_loss,
        optimizer,
        scaler,
        lr_schedule,
        wd_schedule,
        momentum_schedule,
        niter,
        peak_lr,
        precision,
    )


def _build_networks(
    cfg: TrainConfig, task: Task, info: DistInfo, device: torch.device
) -> tuple[MultiCropWrapper, MultiCropWrapper, nn.Module, torch.Tensor | None]:
    """Student and teacher (backbone + DINO head) on ``device``, the teacher a frozen copy of the student; the
    student as it runs forward (DDP under a process group); the initial centre of ``init_weights``, if any."""
    head_kw = dict(
        use_bn=cfg.use_bn_in_head,
        nlayers=cfg.head_nlayers,
        hidden_dim=cfg.head_hidden_dim,
        bottleneck_dim=cfg.head_bottleneck_dim,
    )
    student = MultiCropWrapper(
        task.student_backbone, DINOHead(task.embed_dim, cfg.out_dim, norm_last_layer=cfg.norm_last_layer, **head_kw)
    )
    # The teacher head is built with the default norm_last_layer=True, then overwritten by the student.
    teacher = MultiCropWrapper(task.teacher_backbone, DINOHead(task.embed_dim, cfg.out_dim, **head_kw))
    init_center = _init_student(student, cfg, info.rank)
    if cfg.grad_checkpointing:
        _enable_grad_checkpointing(student.backbone, cfg.arch)
    if info.distributed and _has_batchnorm(student):
        if device.type == "cuda":
            student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
            teacher = nn.SyncBatchNorm.convert_sync_batchnorm(teacher)
        elif info.rank == 0:
            # DDP refuses SyncBatchNorm on CPU modules; batch statistics stay per process there.
            logger.warning("BatchNorm on CPU under torchrun: statistics are per process (SyncBatchNorm needs CUDA)")
    student.to(device)
    teacher.to(device)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    if info.distributed:
        ids = [device.index] if device.type == "cuda" else None
        student_ddp: nn.Module = nn.parallel.DistributedDataParallel(student, device_ids=ids)
    else:
        student_ddp = student
    return student, teacher, student_ddp, init_center


def _build_loss(cfg: TrainConfig, task: Task, device: torch.device, init_center: torch.Tensor | None) -> DINOLoss:
    dino_loss = DINOLoss(
        cfg.out_dim,
        2 + task.n_local_crops,
        cfg.warmup_teacher_temp,
        cfg.teacher_temp,
        cfg.warmup_teacher_temp_epochs,
        cfg.epochs,
        student_temp=cfg.student_temp,
        center_momentum=cfg.center_momentum,
        centering=cfg.teacher_centering,
    ).to(device)
    if init_center is not None:
        dino_loss.center.copy_(init_center.to(device))
    return dino_loss


def _log_settings(cfg: TrainConfig, n: int, niter: int, global_batch: int, peak_lr: float, precision: str) -> None:
    """The run's sizes on rank 0, and warnings for settings known to be risky with small batches."""
    logger.info(
        "%d images, %d iterations/epoch, global batch %d, peak lr %.3g (lr %.3g x %d/256), precision %s -> %s",
        n,
        niter,
        global_batch,
        peak_lr,
        cfg.lr,
        global_batch,
        cfg.precision,
        precision,
    )
    if global_batch < 256 and cfg.momentum_teacher == 0.996:
        logger.warning(
            "global batch %d < 256 with momentum_teacher 0.996: consider 0.9995 (docs/pretraining.md, Small batches)",
            global_batch,
        )
    if not cfg.norm_last_layer and not cfg.arch.startswith("vit_small"):
        logger.warning(
            "norm_last_layer false is only known to be safe with vit_small (docs/pretraining.md, Small batches)"
        )
