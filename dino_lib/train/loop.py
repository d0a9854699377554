"""The DINO training loop: one iteration in the reference DINO trainer's order, epochs, checkpoints, logs, resume.

``train(cfg)`` runs in one process (no process group) or under ``torchrun``/Slurm (process group from the
environment). It resumes automatically from ``RUN_DIR/checkpoint.pth`` and continues exactly where the run
stopped, mid-epoch included: the sampler position, the RNG states, the center, the optimiser and both networks are
restored, and augmentations are a function of (seed, epoch, sample index).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dino_lib.config import save_run_config, to_dict
from dino_lib.runtime import autocast, barrier, destroy_distributed, get_world_size, init_distributed, resolve_device
from dino_lib.train.checkpoint import (
    SCHEMA_VERSION,
    export_teacher_backbone,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    student_state_dict,
)
from dino_lib.train.config import TrainConfig
from dino_lib.train.grad import cancel_gradients_last_layer, clip_gradients
from dino_lib.train.monitors import JsonlLogger, collapse_warnings, read_log
from dino_lib.train.setup import RunParts, build_run, make_loader
from dino_lib.utils.io import atomic_torch_save

logger = logging.getLogger(__name__)

__all__ = ["train", "TrainResult", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped without touching the last good checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    last_epoch: dict[str, Any] | None
    checkpoint: Path
    teacher_export: Path


def _save_config(cfg: TrainConfig, run_dir: Path) -> None:
    """Write config.yaml; an existing one that differs is kept and the new one saved beside it (never overwritten)."""
    from dino_lib.config import read_yaml

    path = run_dir / "config.yaml"
    if path.is_file():
        old = read_yaml(path)
        old.pop("_meta", None)
        new = to_dict(cfg)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if not diff:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        logger.warning("config differs from %s in %s; saving config.%s.yaml beside it", path, diff, stamp)
        save_run_config(cfg, run_dir, name=f"config.{stamp}.yaml")
        return
    save_run_config(cfg, run_dir)


def _checkpoint_state(parts: RunParts, cfg: TrainConfig, epoch: int, it_in_epoch: int) -> dict[str, Any]:
    state = {
        "student": student_state_dict(parts.student),
        "teacher": parts.teacher.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "epoch": epoch,
        "iteration_in_epoch": it_in_epoch,
        "iteration": epoch * parts.niter_per_ep + it_in_epoch,
        "niter_per_ep": parts.niter_per_ep,
        "dino_loss": parts.dino_loss.state_dict(),
        "config": to_dict(cfg),
        "rng_state": get_rng_state(),
        "schema_version": SCHEMA_VERSION,
    }
    if parts.scaler is not None:
        state["fp16_scaler"] = parts.scaler.state_dict()
    return state


def _nonfinite(
    parts: RunParts, cfg: TrainConfig, run_dir: Path, rank: int, epoch: int, it: int, loss: float, indices: list[int]
) -> None:
    snap = run_dir / "nonfinite" / f"rank{rank}_it{it:08d}.pth"
    atomic_torch_save(
        {
            "iteration": it,
            "epoch": epoch,
            "loss": loss,
            "batch_indices": indices,
            "config": to_dict(cfg),
            "student": student_state_dict(parts.student),
            "dino_loss": parts.dino_loss.state_dict(),
        },
        snap,
    )
    raise NonFiniteLossError(
        f"loss is {loss} at iteration {it} (epoch {epoch}); stopped. Diagnostic snapshot: {snap}. The last good "
        f"checkpoint {run_dir / 'checkpoint.pth'} is untouched. Try precision fp32/bf16, a lower lr or clip_grad"
    )


def train(cfg: TrainConfig, *, callback: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Run (or resume) DINO pretraining as configured.

    Args:
        cfg: the configuration.
        callback: called on rank 0 with every log record (``iter``/``epoch``/``event`` dicts), e.g. a progress bar.

    Raises:
        NonFiniteLossError: the loss became non-finite (a snapshot is written to ``RUN_DIR/nonfinite/``).
    """
    device = resolve_device(cfg.device)
    info = init_distributed(device, cfg.dist_timeout_s)
    main = info.rank == 0
    run_dir = Path(cfg.output_dir)
    try:
        parts = build_run(cfg, info, device)  # checks the data first: a failure here leaves no files
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            _save_config(cfg, run_dir)
        tb = _open_tensorboard(run_dir) if cfg.tensorboard and main else None  # fails before any work
        log = JsonlLogger(run_dir / "log.jsonl", enabled=main)

        def emit(record: dict[str, Any]) -> None:
            log.write(record)
            if tb is not None:
                tb.write(record)
            if main and callback is not None:
                callback(record)

        start_epoch, start_iter, epoch_stats = 0, 0, None
        ckpt_path = run_dir / "checkpoint.pth"
        if ckpt_path.is_file():
            meta = load_checkpoint(
                ckpt_path,
                student=parts.student,
                teacher=parts.teacher,
                optimizer=parts.optimizer,
                dino_loss=parts.dino_loss,
                scaler=parts.scaler,
            )
            start_epoch, start_iter = int(meta["epoch"]), int(meta.get("iteration_in_epoch", 0))
            epoch_stats = meta.get("epoch_stats") if start_iter else None  # the interrupted epoch's sums so far
            if meta.get("niter_per_ep") not in (None, parts.niter_per_ep):
                logger.warning(
                    "iterations per epoch changed (%s -> %d): schedules recomputed, epoch restarted",
                    meta["niter_per_ep"],
                    parts.niter_per_ep,
                )
                start_iter, epoch_stats = 0, None
            if "rng_state" in meta:
                set_rng_state(meta["rng_state"])
            if main:
                logger.info("resumed from %s at epoch %d, iteration %d", ckpt_path, start_epoch, start_iter)
            emit({"type": "event", "event": "resume", "epoch": start_epoch, "iteration_in_epoch": start_iter})
        total = cfg.epochs * parts.niter_per_ep
        emit(
            {
                "type": "event",
                "event": "start",
                "total_iters": total,
                "start_it": start_epoch * parts.niter_per_ep + start_iter,
                "niter_per_ep": parts.niter_per_ep,
                "world_size": info.world_size,
                "ln_k": cfg.ln_k,
            }
        )
        if cfg.knn_every and start_epoch == 0 and start_iter == 0:
            # the baseline every later k-NN is read against: the teacher (= student) at initialisation
            knn_init = _knn(parts, cfg, device) if main else {}
            barrier()
            emit({"type": "event", "event": "knn_init", **knn_init})
        last_epoch = None
        for epoch in range(start_epoch, cfg.epochs):
            resumed = epoch == start_epoch
            last_epoch = _train_one_epoch(
                parts, cfg, device, info.rank, epoch, start_iter if resumed else 0, run_dir, emit,
                epoch_stats if resumed else None,
            )  # fmt: skip
            state = _checkpoint_state(parts, cfg, epoch + 1, 0)
            if main:
                save_checkpoint(state, run_dir, epoch, cfg.saveckp_freq)
                export_teacher_backbone(
                    parts.teacher, run_dir / "teacher_backbone.pth", safetensors=cfg.export_safetensors
                )
            if cfg.knn_every and (epoch + 1) % cfg.knn_every == 0:
                if main:
                    last_epoch.update(_knn(parts, cfg, device))
                    if tb is not None:
                        _attention_image(tb, parts, cfg, epoch)
                barrier()
            emit(last_epoch)
            if main:
                epochs = [r for r in read_log(run_dir / "log.jsonl") if r.get("type") == "epoch"]
                for msg in collapse_warnings(epochs, cfg.ln_k, cfg.collapse_patience):
                    logger.warning("possible collapse: %s", msg)
                    emit({"type": "event", "event": "warning", "epoch": epoch, "message": msg})
        if main and not (run_dir / "teacher_backbone.pth").is_file():
            export_teacher_backbone(parts.teacher, run_dir / "teacher_backbone.pth", safetensors=cfg.export_safetensors)
        emit({"type": "event", "event": "end", "epochs_done": cfg.epochs})
        if tb is not None:
            tb.close()
        barrier()
        return TrainResult(run_dir, cfg.epochs, last_epoch, ckpt_path, run_dir / "teacher_backbone.pth")
    finally:
        destroy_distributed()


def _open_tensorboard(run_dir: Path) -> Any:
    from dino_lib.train.tracking import TensorBoardWriter

    return TensorBoardWriter(run_dir / "tb")


def _attention_image(tb: Any, parts: RunParts, cfg: TrainConfig, epoch: int) -> None:
    """The teacher's last-block attention on the first k-NN image, as a TensorBoard image (ViTs only)."""
    from dino_lib.attention.tracking import AttentionSnapshot
    from dino_lib.sample_data import resolve_data_path

    snapshot = AttentionSnapshot.first_image_of(resolve_data_path(cfg.knn_data_path), cfg.knn_crop)
    snapshot.on_epoch_end(epoch, parts.teacher, tb)


def _knn(parts: RunParts, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    from dino_lib.eval.monitor import knn_monitor

    out = {}
    for name, net in (("teacher", parts.teacher), ("student", parts.student)):
        res = knn_monitor(
            net.backbone,
            cfg.knn_data_path,
            device=device,
            precision=parts.precision,
            resize=cfg.knn_resize,
            crop=cfg.knn_crop,
            distributed=False,
        )
        out.update({f"knn_{name}_{k.removeprefix('knn_')}": float(v) for k, v in res.items()})
    return out


def _forward_backward(
    parts: RunParts, cfg: TrainConfig, device: torch.device, crops: list[torch.Tensor], epoch: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward and backward of one batch, in ``cfg.accumulate_steps`` equal micro-batches; returns the detached
    batch loss and the loss statistics.

    Accumulation keeps the DINO update of the whole batch: each micro-batch's loss (a mean over its images) is
    weighted 1/N so the summed gradients equal the batch gradient, every micro-batch is centred with the same
    centre, and the centre is updated once, from the mean teacher output of the whole batch. The optimiser step,
    EMA and schedules stay once per batch (in the caller). Only BatchNorm statistics differ (per micro-batch).
    """
    n = cfg.accumulate_steps
    if n == 1:  # the reference iteration, unchanged
        crops = [c.to(device, non_blocking=True) for c in crops]
        with autocast(device, parts.precision):
            with torch.no_grad():
                teacher_out = parts.teacher(crops[:2])  # (2B, K)
            student_out = parts.student_ddp(crops)  # (ncrops B, K)
        loss = parts.dino_loss(student_out, teacher_out, epoch)  # fp32; updates the center afterwards
        (parts.scaler.scale(loss) if parts.scaler is not None else loss).backward()
        return loss.detach().clone(), dict(parts.dino_loss.last_stats)
    micro = crops[0].shape[0] // n
    teacher_outs, total, entropy = [], torch.zeros((), device=device), torch.zeros((), device=device)
    for j in range(n):
        chunk = [c[j * micro : (j + 1) * micro].to(device, non_blocking=True) for c in crops]
        last = j == n - 1
        no_sync = getattr(parts.student_ddp, "no_sync", None)  # DDP: all-reduce the gradients once, at the end
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            with autocast(device, parts.precision):
                with torch.no_grad():
                    teacher_out = parts.teacher(chunk[:2])  # (2 B/N, K)
                student_out = parts.student_ddp(chunk)  # (ncrops B/N, K)
            loss = parts.dino_loss(student_out, teacher_out, epoch, update_center=False) / n
            (parts.scaler.scale(loss) if parts.scaler is not None else loss).backward()
        teacher_outs.append(teacher_out.detach().float())
        total += loss.detach()
        entropy += parts.dino_loss.last_stats["teacher_entropy"] / n
    parts.dino_loss.update_center(torch.cat(teacher_outs))
    stats = dict(parts.dino_loss.last_stats, teacher_entropy=entropy, center_norm=parts.dino_loss.center.norm())
    return total, stats


def _train_one_epoch(
    parts: RunParts,
    cfg: TrainConfig,
    device: torch.device,
    rank: int,
    epoch: int,
    start_iter: int,
    run_dir: Path,
    emit: Callable[[dict[str, Any]], None],
    epoch_stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One epoch from ``start_iter``; ``epoch_stats`` (sums and step count of the iterations run before a mid-epoch
    resume) make the epoch's means cover all its iterations."""
    parts.dataset.set_epoch(epoch)
    parts.sampler.set_epoch(epoch, start_iter)
    indices = parts.sampler.epoch_indices()
    niter, bs = parts.niter_per_ep, cfg.batch_size_per_gpu
    world = get_world_size()
    parts.student_ddp.train()
    parts.teacher.train()  # never eval: BN teachers use batch statistics, as in the reference
    sums: dict[str, float] = dict((epoch_stats or {}).get("sums", {}))
    n_before = int((epoch_stats or {}).get("steps", 0))
    n_steps, t_epoch, t_wait = 0, time.perf_counter(), 0.0
    t_last = time.perf_counter()
    for i, (crops, _) in enumerate(make_loader(parts, cfg, device, epoch), start=start_iter):
        t_data = time.perf_counter()
        t_wait += t_data - t_last
        it = epoch * niter + i
        for g, group in enumerate(parts.optimizer.param_groups):
            group["lr"] = float(parts.lr_schedule[it])
            if g == 0:  # only the regularised group gets weight decay, as in the reference DINO trainer
                group["weight_decay"] = float(parts.wd_schedule[it])
        parts.optimizer.zero_grad(set_to_none=True)
        loss_all, stats_t = _forward_backward(parts, cfg, device, crops, epoch)  # gradients of the whole batch
        # loss and loss statistics averaged over the ranks in one collective: a NaN on any rank stops every rank
        # at the same step, and teacher_entropy is the global batch's (equal local batches)
        names = sorted(stats_t)
        stat_values = [torch.as_tensor(stats_t[k]).detach().float().reshape(()).to(loss_all.device) for k in names]
        packed = torch.stack([loss_all.float().reshape(()), *stat_values])
        if world > 1:
            torch.distributed.all_reduce(packed)
            packed /= world
        loss_value = float(packed[0])
        global_stats = dict(zip(names, packed[1:].tolist()))
        if not math.isfinite(loss_value):  # checked before the step: the weights stay as they were
            _nonfinite(parts, cfg, run_dir, rank, epoch, it, loss_value, indices[i * bs : (i + 1) * bs])
        if parts.scaler is not None:
            if cfg.clip_grad:
                parts.scaler.unscale_(parts.optimizer)
                clip_gradients(parts.student, cfg.clip_grad)
            cancel_gradients_last_layer(epoch, parts.student, cfg.freeze_last_layer)
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
        else:
            if cfg.clip_grad:
                clip_gradients(parts.student, cfg.clip_grad)
            cancel_gradients_last_layer(epoch, parts.student, cfg.freeze_last_layer)
            parts.optimizer.step()
        momentum = float(parts.momentum_schedule[it])
        parts.ema.update(momentum)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t_last = time.perf_counter()
        stats = {k: float(v) for k, v in global_stats.items()}
        step = {
            "loss": loss_value,
            "lr": float(parts.lr_schedule[it]),
            "wd": float(parts.wd_schedule[it]),
            "momentum": momentum,
            **stats,
        }
        for k, v in step.items():
            sums[k] = sums.get(k, 0.0) + v
        n_steps += 1
        done = i + 1
        if done % cfg.log_every == 0 or done == niter:
            rec = {"type": "iter", "epoch": epoch, "it": it, **step, "ln_k": cfg.ln_k}
            rec["images_per_s"] = bs * world * n_steps / max(t_last - t_epoch, 1e-9)  # source images, all ranks
            rec["data_wait_frac"] = t_wait / max(t_last - t_epoch, 1e-9)
            if parts.scaler is not None:
                rec["scaler_scale"] = float(parts.scaler.get_scale())
            emit(rec)
        if cfg.checkpoint_every_iters and done % cfg.checkpoint_every_iters == 0 and done < niter:
            state = _checkpoint_state(parts, cfg, epoch, done)
            state["epoch_stats"] = {"sums": dict(sums), "steps": n_before + n_steps}
            if rank == 0:
                save_checkpoint(state, run_dir, None, 0)
    mean = {k: v / max(n_before + n_steps, 1) for k, v in sums.items()}
    elapsed = time.perf_counter() - t_epoch
    return {
        "type": "epoch",
        "epoch": epoch,
        "train_loss": mean.get("loss"),
        "train_lr": mean.get("lr"),
        "train_wd": mean.get("wd"),
        "momentum": mean.get("momentum"),
        "teacher_temp": mean.get("teacher_temp"),
        "teacher_entropy": mean.get("teacher_entropy"),
        "center_norm": mean.get("center_norm"),
        "ln_k": cfg.ln_k,
        "images_per_s": bs * world * n_steps / max(elapsed, 1e-9),
        "iterations": n_before + n_steps,
        "seconds": elapsed,
    }
