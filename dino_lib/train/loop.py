"""The DINO training loop: one iteration in the reference DINO trainer's order, epochs, checkpoints, logs, resume.

``train(cfg)`` runs in one process (no process group) or under ``torchrun``/Slurm (process group from the
environment). It resumes automatically from ``RUN_DIR/checkpoint.pth`` and continues exactly where the run
stopped, mid-epoch included: the sampler position, the RNG states, the center, the optimiser and both networks are
restored, and augmentations are a function of (seed, epoch, sample index).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dino_lib.config import save_run_config, to_dict
from dino_lib.losses import koleo_loss
from dino_lib.runtime import (
    DistInfo,
    autocast,
    barrier,
    destroy_distributed,
    get_world_size,
    init_distributed,
    resolve_device,
)
from dino_lib.train.callbacks import TrainCallback, TrainState
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


@dataclass
class _Run:
    """What one process of a run holds while it trains."""

    cfg: TrainConfig
    parts: RunParts
    device: torch.device
    info: DistInfo
    run_dir: Path
    tb: Any
    emit: Callable[[dict[str, Any]], None]
    callbacks: Sequence[TrainCallback]

    @property
    def main(self) -> bool:
        return self.info.rank == 0

    def state(self, epoch: int, iteration_in_epoch: int = 0) -> TrainState:
        return TrainState(
            config=self.cfg,
            epoch=epoch,
            iteration_in_epoch=iteration_in_epoch,
            teacher=self.parts.teacher,
            student=self.parts.student,
            device=self.device,
            precision=self.parts.precision,
            run_dir=self.run_dir,
            tensorboard=self.tb,
            emit=self.emit,
        )


def train(
    cfg: TrainConfig,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
    callbacks: Sequence[TrainCallback] | None = None,
) -> TrainResult:
    """Run (or resume) DINO pretraining as configured.

    Args:
        cfg: the configuration.
        callback: called on rank 0 with every log record (``iter``/``epoch``/``event`` dicts), e.g. a progress bar.
        callbacks: :class:`~dino_lib.train.callbacks.TrainCallback` objects run on rank 0 at the start and after
            every epoch, e.g. the k-NN monitor of ``knn_every`` (:func:`dino_lib.launch.default_callbacks`
            builds those the configuration asks for; the command line and :mod:`dino_lib.launch` pass them).

    Raises:
        NonFiniteLossError: the loss became non-finite (a snapshot is written to ``RUN_DIR/nonfinite/``).
    """
    if cfg.knn_every and callbacks is None:
        logger.warning(
            "knn_every is %d but no callbacks were given, so no k-NN monitor runs; pass "
            "callbacks=dino_lib.launch.default_callbacks(cfg) to train()",
            cfg.knn_every,
        )
    device = resolve_device(cfg.device)
    info = init_distributed(device, cfg.dist_timeout_s)
    try:
        run = _start_run(cfg, info, device, callback, list(callbacks or []))
        start_epoch, start_iter, epoch_stats = _resume(run)
        _emit_start(run, start_epoch, start_iter)
        _call_back(run, lambda cb: cb.on_train_start(run.state(start_epoch, start_iter)))
        last_epoch = None
        for epoch in range(start_epoch, cfg.epochs):
            resumed = epoch == start_epoch
            last_epoch = _train_one_epoch(
                run, epoch, start_iter if resumed else 0, epoch_stats if resumed else None
            )  # fmt: skip
            _end_epoch(run, epoch, last_epoch)
        return _finish(run, last_epoch)
    finally:
        destroy_distributed()


def _start_run(
    cfg: TrainConfig,
    info: DistInfo,
    device: torch.device,
    callback: Callable[[dict[str, Any]], None] | None,
    callbacks: Sequence[TrainCallback],
) -> _Run:
    """Build the run (the data are checked first: a failure leaves no files), then its config file and logs."""
    main = info.rank == 0
    run_dir = Path(cfg.output_dir)
    parts = build_run(cfg, info, device)
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

    return _Run(cfg, parts, device, info, run_dir, tb, emit, callbacks)


def _resume(run: _Run) -> tuple[int, int, dict[str, Any] | None]:
    """Restore ``RUN_DIR/checkpoint.pth`` when there is one: ``(start epoch, start iteration, epoch sums so far)``."""
    parts, ckpt_path = run.parts, run.run_dir / "checkpoint.pth"
    if not ckpt_path.is_file():
        return 0, 0, None
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
    if run.main:
        logger.info("resumed from %s at epoch %d, iteration %d", ckpt_path, start_epoch, start_iter)
    run.emit({"type": "event", "event": "resume", "epoch": start_epoch, "iteration_in_epoch": start_iter})
    return start_epoch, start_iter, epoch_stats


def _emit_start(run: _Run, start_epoch: int, start_iter: int) -> None:
    niter = run.parts.niter_per_ep
    run.emit(
        {
            "type": "event",
            "event": "start",
            "total_iters": run.cfg.epochs * niter,
            "start_it": start_epoch * niter + start_iter,
            "niter_per_ep": niter,
            "world_size": run.info.world_size,
            "ln_k": run.cfg.ln_k,
        }
    )


def _call_back(run: _Run, hook: Callable[[TrainCallback], dict[str, float] | None]) -> dict[str, float]:
    """Run ``hook`` on every callback on rank 0 while the other ranks wait; returns the merged numbers."""
    if not run.callbacks:
        return {}
    out: dict[str, float] = {}
    if run.main:
        for cb in run.callbacks:
            out.update(hook(cb) or {})
    barrier()
    return out


def _end_epoch(run: _Run, epoch: int, record: dict[str, Any]) -> None:
    """Checkpoint and teacher export, the callbacks' numbers into the epoch record, then the collapse check."""
    cfg = run.cfg
    state = _checkpoint_state(run.parts, cfg, epoch + 1, 0)
    if run.main:
        save_checkpoint(state, run.run_dir, epoch, cfg.saveckp_freq)
        export_teacher_backbone(
            run.parts.teacher, run.run_dir / "teacher_backbone.pth", safetensors=cfg.export_safetensors
        )
    record.update(_call_back(run, lambda cb: cb.on_epoch_end(run.state(epoch))))
    run.emit(record)
    if run.main:
        epochs = [r for r in read_log(run.run_dir / "log.jsonl") if r.get("type") == "epoch"]
        for msg in collapse_warnings(epochs, cfg.ln_k, cfg.collapse_patience):
            logger.warning("possible collapse: %s", msg)
            run.emit({"type": "event", "event": "warning", "epoch": epoch, "message": msg})


def _finish(run: _Run, last_epoch: dict[str, Any] | None) -> TrainResult:
    cfg, run_dir = run.cfg, run.run_dir
    if run.main and not (run_dir / "teacher_backbone.pth").is_file():
        export_teacher_backbone(run.parts.teacher, run_dir / "teacher_backbone.pth", safetensors=cfg.export_safetensors)
    run.emit({"type": "event", "event": "end", "epochs_done": cfg.epochs})
    if run.tb is not None:
        run.tb.close()
    barrier()
    return TrainResult(run_dir, cfg.epochs, last_epoch, run_dir / "checkpoint.pth", run_dir / "teacher_backbone.pth")


def _open_tensorboard(run_dir: Path) -> Any:
    from dino_lib.train.tracking import TensorBoardWriter

    return TensorBoardWriter(run_dir / "tb")


def _device_crops(parts: RunParts, batch: Any, device: torch.device) -> list[torch.Tensor]:
    """The crops of a collated (micro-)batch on ``device``: moved there, or made there by the task's
    ``device_transform`` (``augmentation: batched``)."""
    if parts.task.device_transform is not None:
        return parts.task.device_transform(batch, device)
    return [c.to(device, non_blocking=True) for c in batch]


def _rows(batch: Any, start: int, end: int) -> Any:
    """Rows ``start:end`` of every tensor of a collated batch (nested lists, tuples and dicts)."""
    if isinstance(batch, torch.Tensor):
        return batch[start:end]
    if isinstance(batch, dict):
        return {k: _rows(v, start, end) for k, v in batch.items()}
    return [_rows(v, start, end) for v in batch]


def _forward_backward(
    parts: RunParts, cfg: TrainConfig, device: torch.device, crops: Any, epoch: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward and backward of one batch, in ``cfg.accumulate_steps`` equal micro-batches; returns the detached
    batch loss and the loss statistics. ``crops`` is the collated batch (the crop list, or what the task's device
    transform turns into crops, per micro-batch).

    Accumulation keeps the DINO update of the whole batch: each micro-batch's loss (a mean over its images) is
    weighted 1/N so the summed gradients equal the batch gradient, every micro-batch is centred with the same
    centre, and the centre is updated once, from the mean teacher output of the whole batch. The optimiser step,
    EMA and schedules stay once per batch (in the caller). Only BatchNorm statistics differ (per micro-batch).
    """
    n = cfg.accumulate_steps
    if n == 1:  # the reference iteration, unchanged
        crops = _device_crops(parts, crops, device)
        with autocast(device, parts.precision):
            with torch.no_grad():
                teacher_out = parts.teacher(crops[:2])  # (2B, K)
            student_out, student_cls = _student_forward(parts, cfg, crops)  # (ncrops B, K)
        loss = parts.dino_loss(student_out, teacher_out, epoch)  # fp32; updates the center afterwards
        total, koleo = _add_koleo(loss, student_cls, cfg)
        (parts.scaler.scale(total) if parts.scaler is not None else total).backward()
        stats = dict(parts.dino_loss.last_stats)
        if koleo is not None:
            stats["koleo_loss"] = koleo
        return loss.detach().clone(), stats
    micro = crops[0].shape[0] // n
    teacher_outs, total, entropy = [], torch.zeros((), device=device), torch.zeros((), device=device)
    koleo = torch.zeros((), device=device)
    for j in range(n):
        chunk = _device_crops(parts, _rows(crops, j * micro, (j + 1) * micro), device)
        last = j == n - 1
        no_sync = getattr(parts.student_ddp, "no_sync", None)  # DDP: all-reduce the gradients once, at the end
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            with autocast(device, parts.precision):
                with torch.no_grad():
                    teacher_out = parts.teacher(chunk[:2])  # (2 B/N, K)
                student_out, student_cls = _student_forward(parts, cfg, chunk)  # (ncrops B/N, K)
            loss = parts.dino_loss(student_out, teacher_out, epoch, update_center=False) / n
            loss_and_koleo, micro_koleo = _add_koleo(loss, student_cls, cfg, scale=1.0 / n)
            (parts.scaler.scale(loss_and_koleo) if parts.scaler is not None else loss_and_koleo).backward()
        teacher_outs.append(teacher_out.detach().float())
        total += loss.detach()
        entropy += parts.dino_loss.last_stats["teacher_entropy"] / n
        if micro_koleo is not None:
            koleo += micro_koleo / n
    parts.dino_loss.update_center(torch.cat(teacher_outs))
    stats = dict(parts.dino_loss.last_stats, teacher_entropy=entropy, center_norm=parts.dino_loss.center.norm())
    if cfg.koleo_weight:
        stats["koleo_loss"] = koleo
    return total, stats


def _student_forward(
    parts: RunParts, cfg: TrainConfig, crops: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Student head outputs, plus the backbone features of the two global crops when the KoLeo term is on."""
    if not cfg.koleo_weight:
        return parts.student_ddp(crops), None
    out, features = parts.student_ddp(crops, return_features=True)
    return out, features[: 2 * crops[0].shape[0]]


def _add_koleo(
    loss: torch.Tensor, student_cls: torch.Tensor | None, cfg: TrainConfig, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(loss to back-propagate, detached KoLeo value or None)``: the DINO loss plus ``koleo_weight`` x the KoLeo
    term of each global crop's features (summed over the two crops, as in DINOv2). The KoLeo value is logged on its
    own; the logged loss stays the DINO loss."""
    if student_cls is None:
        return loss, None
    koleo = sum(koleo_loss(part) for part in student_cls.chunk(2))
    return loss + scale * cfg.koleo_weight * koleo, koleo.detach()


@dataclass
class _EpochMeter:
    """Running sums of one epoch's step values (continued from a checkpoint's sums after a mid-epoch resume)."""

    sums: dict[str, float]
    n_before: int  # steps run before the resume
    n_steps: int = 0
    t_start: float = dataclasses.field(default_factory=time.perf_counter)
    t_wait: float = 0.0  # seconds spent waiting for the data loader

    @classmethod
    def resumed(cls, epoch_stats: dict[str, Any] | None) -> _EpochMeter:
        return cls(dict((epoch_stats or {}).get("sums", {})), int((epoch_stats or {}).get("steps", 0)))

    def add(self, step: dict[str, float]) -> None:
        for k, v in step.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n_steps += 1

    @property
    def steps(self) -> int:
        return self.n_before + self.n_steps

    def mean(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}


def _train_one_epoch(
    run: _Run, epoch: int, start_iter: int, epoch_stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One epoch from ``start_iter``; ``epoch_stats`` (sums and step count of the iterations run before a mid-epoch
    resume) make the epoch's means cover all its iterations."""
    parts, cfg = run.parts, run.cfg
    parts.dataset.set_epoch(epoch)
    parts.sampler.set_epoch(epoch, start_iter)
    indices = parts.sampler.epoch_indices()
    niter, bs = parts.niter_per_ep, cfg.batch_size_per_gpu
    parts.student_ddp.train()
    parts.teacher.train()  # never eval: BN teachers use batch statistics, as in the reference
    meter = _EpochMeter.resumed(epoch_stats)
    t_last = time.perf_counter()
    for i, (crops, _) in enumerate(make_loader(parts, cfg, run.device, epoch), start=start_iter):
        meter.t_wait += time.perf_counter() - t_last
        it = epoch * niter + i
        step = _train_step(run, epoch, it, crops, indices[i * bs : (i + 1) * bs])
        t_last = time.perf_counter()
        meter.add(step)
        done = i + 1
        if done % cfg.log_every == 0 or done == niter:
            run.emit(_iteration_record(run, epoch, it, step, meter, t_last))
        if cfg.checkpoint_every_iters and done % cfg.checkpoint_every_iters == 0 and done < niter:
            state = _checkpoint_state(parts, cfg, epoch, done)
            state["epoch_stats"] = {"sums": dict(meter.sums), "steps": meter.steps}
            if run.main:
                save_checkpoint(state, run.run_dir, None, 0)
    return _epoch_record(run, epoch, meter)


def _train_step(run: _Run, epoch: int, it: int, crops: Any, batch_indices: list[int]) -> dict[str, float]:
    """One iteration: schedules, forward/backward, the loss over all ranks, the optimiser step and the EMA."""
    parts, cfg = run.parts, run.cfg
    for g, group in enumerate(parts.optimizer.param_groups):
        group["lr"] = float(parts.lr_schedule[it])
        if g == 0:  # only the regularised group gets weight decay, as in the reference DINO trainer
            group["weight_decay"] = float(parts.wd_schedule[it])
    parts.optimizer.zero_grad(set_to_none=True)
    loss_all, stats_t = _forward_backward(parts, cfg, run.device, crops, epoch)  # gradients of the whole batch
    loss_value, global_stats = _mean_over_ranks(loss_all, stats_t)
    if not math.isfinite(loss_value):  # checked before the step: the weights stay as they were
        _nonfinite(parts, cfg, run.run_dir, run.info.rank, epoch, it, loss_value, batch_indices)
    _optimizer_step(parts, cfg, epoch)
    momentum = float(parts.momentum_schedule[it])
    parts.ema.update(momentum)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    return {
        "loss": loss_value,
        "lr": float(parts.lr_schedule[it]),
        "wd": float(parts.wd_schedule[it]),
        "momentum": momentum,
        **global_stats,
    }


def _mean_over_ranks(loss: torch.Tensor, stats: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    """Loss and loss statistics averaged over the ranks in one collective: a NaN on any rank stops every rank at
    the same step, and teacher_entropy is the global batch's (equal local batches)."""
    names = sorted(stats)
    stat_values = [torch.as_tensor(stats[k]).detach().float().reshape(()).to(loss.device) for k in names]
    packed = torch.stack([loss.float().reshape(()), *stat_values])
    world = get_world_size()
    if world > 1:
        torch.distributed.all_reduce(packed)
        packed /= world
    return float(packed[0]), {k: float(v) for k, v in zip(names, packed[1:].tolist())}


def _optimizer_step(parts: RunParts, cfg: TrainConfig, epoch: int) -> None:
    """Clip (after unscaling fp16 gradients), freeze the last layer early on, step."""
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


def _iteration_record(
    run: _Run, epoch: int, it: int, step: dict[str, float], meter: _EpochMeter, now: float
) -> dict[str, Any]:
    bs, world = run.cfg.batch_size_per_gpu, get_world_size()
    rec = {"type": "iter", "epoch": epoch, "it": it, **step, "ln_k": run.cfg.ln_k}
    rec["images_per_s"] = bs * world * meter.n_steps / max(now - meter.t_start, 1e-9)  # source images, all ranks
    rec["data_wait_frac"] = meter.t_wait / max(now - meter.t_start, 1e-9)
    if run.parts.scaler is not None:
        rec["scaler_scale"] = float(run.parts.scaler.get_scale())
    return rec


def _epoch_record(run: _Run, epoch: int, meter: _EpochMeter) -> dict[str, Any]:
    mean = meter.mean()
    elapsed = time.perf_counter() - meter.t_start
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
        **({"koleo_loss": mean["koleo_loss"]} if "koleo_loss" in mean else {}),
        "ln_k": run.cfg.ln_k,
        "images_per_s": run.cfg.batch_size_per_gpu * get_world_size() * meter.n_steps / max(elapsed, 1e-9),
        "iterations": meter.steps,
        "seconds": elapsed,
    }
