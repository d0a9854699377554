"""Linear probe on frozen features (docs/evaluation.md).

Faithful mode (``cached=False``): features are recomputed under ``no_grad`` from freshly augmented images at every
step (RandomResizedCrop + flip), the classifier is ``Linear(dim, num_labels)`` with N(0, 0.01²) weights and zero
bias, SGD (momentum 0.9, weight decay 0) with ``lr * batch_size * world_size / 256``, cosine annealing to 0 stepped
once per epoch, cross-entropy, validation every ``val_freq`` epochs and at the last epoch, and the reported number
is the best validation top-1 (the reference's model selection on val). ``output_dir/checkpoint.pth.tar`` holds
``epoch`` (next epoch), ``state_dict`` (``module.linear.*`` keys as the released linear weights), ``optimizer``,
``scheduler`` and ``best_acc``; training resumes from it automatically.

Cached mode (``cached=True``, non-faithful, much faster): the loaders yield pre-extracted features (no
augmentation) and the same classifier/optimiser run on them. No module-global state: everything is an argument.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dino_lib.utils.io import atomic_torch_save, atomic_write_text, safe_torch_load

logger = logging.getLogger(__name__)

__all__ = [
    "LinearClassifier",
    "ProbeHyperparameters",
    "linear_state_dict",
    "load_linear_state",
    "train_linear_probe",
    "evaluate_linear",
]

CHECKPOINT_NAME = "checkpoint.pth.tar"


@dataclasses.dataclass(frozen=True)
class ProbeHyperparameters:
    """How long and how fast the probe trains; the defaults are the reference's command-line defaults.

    Args:
        epochs: training epochs (the cosine schedule anneals to 0 over them).
        lr: learning rate for a total batch of 256 (scaled by ``batch_size * world_size / 256``).
        batch_size: batch size per process.
        val_freq: validate every ``val_freq`` epochs (and at the last epoch).
    """

    epochs: int = 100
    lr: float = 0.001
    batch_size: int = 128
    val_freq: int = 1


class LinearClassifier(nn.Module):
    """Flatten -> Linear(dim, num_labels), weight ~ N(0, 0.01²), bias 0, as the reference."""

    def __init__(self, dim: int, num_labels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_labels)
        nn.init.normal_(self.linear.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))  # (B, num_labels)


def linear_state_dict(classifier: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with the reference's DDP key names ``module.linear.weight`` / ``module.linear.bias``."""
    inner = classifier.module if hasattr(classifier, "module") else classifier
    return {f"module.{k}": v.detach().cpu() for k, v in inner.state_dict().items()}


def load_linear_state(classifier: nn.Module, state: dict[str, Any], source: str = "") -> None:
    """Load ``{"state_dict": ...}`` or a plain state dict, with or without ``module.``, strictly."""
    state = state.get("state_dict", state)
    clean = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    inner = classifier.module if hasattr(classifier, "module") else classifier
    try:
        inner.load_state_dict(clean, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{source}: linear weights do not fit Linear{tuple(inner.linear.weight.shape[::-1])}: {err}"
        ) from None


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate_linear(
    classifier: nn.Module,
    loader: DataLoader,
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    num_labels: int,
) -> dict[str, float]:
    """Mean loss, top-1 and (when ``num_labels >= 5``) top-5 accuracy in percent over ``loader``."""
    classifier.eval()
    total, loss_sum, top1, top5 = 0, 0.0, 0, 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        logits = classifier(features_fn(inputs).float())  # (B, num_labels)
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        ranked = logits.topk(min(5, num_labels), dim=1).indices  # (B, 5)
        top1 += int((ranked[:, 0] == labels).sum())
        top5 += int((ranked == labels[:, None]).any(1).sum())
        total += labels.numel()
    stats = {"loss": loss_sum / total, "acc1": 100.0 * top1 / total}
    if num_labels >= 5:
        stats["acc5"] = 100.0 * top5 / total
    return stats


def train_linear_probe(
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    train_data: Dataset,
    val_data: Dataset,
    *,
    dim: int,
    num_labels: int,
    hparams: ProbeHyperparameters | None = None,
    output_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
    signature: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a linear classifier on ``features_fn(inputs)`` and report best/last validation accuracy.

    Args:
        features_fn: frozen feature function of a batch (e.g. a backbone's last-n CLS), or identity for cached
            features; called under ``no_grad``.
        train_data, val_data: datasets of ``(input, label)`` (augmented images, or feature tensors).
        dim, num_labels: classifier size.
        hparams: epochs, learning rate, batch size and validation frequency (the reference's by default).
        output_dir: where ``checkpoint.pth.tar``, ``log.jsonl`` and ``linear_results.json`` go; resumed from.
        device, num_workers, seed, progress: run settings.
        signature: what the features depend on (weights hash, layout, ...); a checkpoint in ``output_dir`` made
            with another signature is not resumed (a warning is logged and training starts afresh).

    Returns:
        ``{"best_acc", "best_epoch", "last_acc", "last", "history", "lr"}`` (accuracies in percent).
    """
    hp = hparams or ProbeHyperparameters()
    device = torch.device(device)
    rank, world = _world()
    probe = _build_probe(train_data, val_data, dim, num_labels, hp, device, num_workers, seed)
    out = Path(output_dir) if output_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    state = _Progress(0, 0.0, -1, [])
    if ckpt_path is not None and ckpt_path.is_file():
        state = _resume_probe(probe, ckpt_path, signature) or state

    def frozen(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return features_fn(x).float()

    history = state.history
    last: dict[str, float] = history[-1].get("val", {}) if history else {}
    for epoch in range(state.start_epoch, hp.epochs):
        record = _train_probe_epoch(probe, frozen, device, epoch, seed, show=progress and rank == 0)
        if epoch % hp.val_freq == 0 or epoch == hp.epochs - 1:
            last = evaluate_linear(probe.classifier, probe.val_loader, frozen, device, num_labels)
            record["val"] = last
            if last["acc1"] > state.best_acc or state.best_epoch < 0:
                state.best_acc, state.best_epoch = last["acc1"], epoch
            logger.info("linear epoch %d: val top-1 %.2f (best %.2f)", epoch, last["acc1"], state.best_acc)
        history.append(record)
        if out is not None and rank == 0:
            _save_probe(probe, state, out, epoch, signature)
    result = {
        "best_acc": state.best_acc,
        "best_epoch": state.best_epoch,
        "last_acc": last.get("acc1", float("nan")),
        "last": last,
        "history": history,
        "lr": probe.lr,
    }
    if out is not None and rank == 0:
        atomic_write_text(out / "linear_results.json", json.dumps(result, indent=1))
    return result


@dataclasses.dataclass
class _Probe:
    """The classifier of a linear probe with its optimiser, schedule and loaders."""

    classifier: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    lr: float  # the scaled learning rate
    sampler: DistributedSampler | None
    generator: torch.Generator
    train_loader: DataLoader
    val_loader: DataLoader


@dataclasses.dataclass
class _Progress:
    """Where a probe stands: the next epoch, the best validation top-1 so far and the per-epoch records."""

    start_epoch: int
    best_acc: float
    best_epoch: int
    history: list[dict[str, Any]]


def _build_probe(
    train_data: Dataset,
    val_data: Dataset,
    dim: int,
    num_labels: int,
    hp: ProbeHyperparameters,
    device: torch.device,
    num_workers: int,
    seed: int,
) -> _Probe:
    _, world = _world()
    torch.manual_seed(seed)
    classifier: nn.Module = LinearClassifier(dim, num_labels).to(device)
    if world > 1:
        classifier = nn.parallel.DistributedDataParallel(
            classifier, device_ids=[device] if device.type == "cuda" else None
        )
    scaled_lr = hp.lr * hp.batch_size * world / 256.0
    optimizer = torch.optim.SGD(classifier.parameters(), lr=scaled_lr, momentum=0.9, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, hp.epochs, eta_min=0.0)
    sampler = DistributedSampler(train_data, shuffle=True, seed=seed) if world > 1 else None
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        train_data,
        batch_size=hp.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=False,
        generator=generator,
    )
    val_loader = DataLoader(val_data, batch_size=hp.batch_size, shuffle=False, num_workers=num_workers)
    return _Probe(classifier, optimizer, scheduler, scaled_lr, sampler, generator, train_loader, val_loader)


def _resume_probe(probe: _Probe, ckpt_path: Path, signature: dict[str, Any] | None) -> _Progress | None:
    """Restore ``ckpt_path`` into ``probe``; None (start afresh) when it was made with another signature."""
    ckpt = safe_torch_load(ckpt_path)
    if ckpt.get("signature") != signature:
        logger.warning(
            "%s was made with other features/settings (%s != %s); starting the linear probe afresh",
            ckpt_path,
            ckpt.get("signature"),
            signature,
        )
        return None
    load_linear_state(probe.classifier, ckpt, str(ckpt_path))
    probe.optimizer.load_state_dict(ckpt["optimizer"])
    probe.scheduler.load_state_dict(ckpt["scheduler"])
    done = _Progress(
        int(ckpt["epoch"]), float(ckpt["best_acc"]), int(ckpt.get("best_epoch", -1)), list(ckpt.get("history", []))
    )
    logger.info("resumed the linear probe from %s at epoch %d (best %.2f)", ckpt_path, done.start_epoch, done.best_acc)
    return done


def _train_probe_epoch(
    probe: _Probe,
    frozen: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    epoch: int,
    seed: int,
    show: bool,
) -> dict[str, Any]:
    """One training epoch of the classifier; returns the epoch's record (loss, lr) and steps the schedule."""
    from tqdm.auto import tqdm

    probe.classifier.train()
    if probe.sampler is not None:
        probe.sampler.set_epoch(epoch)
    probe.generator.manual_seed(seed + epoch)  # the epoch's order depends only on (seed, epoch): exact resume
    loss_sum, seen = 0.0, 0
    quiet = {} if show else {"disable": True}  # when shown, TQDM_DISABLE can still switch it off
    for inputs, labels in tqdm(probe.train_loader, desc=f"linear epoch {epoch}", **quiet):
        inputs, labels = inputs.to(device), labels.to(device)
        logits = probe.classifier(frozen(inputs))  # (B, num_labels)
        loss = nn.functional.cross_entropy(logits, labels)
        probe.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        probe.optimizer.step()
        loss_sum += loss.item() * labels.numel()
        seen += labels.numel()
    record: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": loss_sum / max(seen, 1),
        "train_lr": probe.optimizer.param_groups[0]["lr"],
    }
    probe.scheduler.step()  # once per epoch, after training it (reference order)
    return record


def _save_probe(probe: _Probe, done: _Progress, out: Path, epoch: int, signature: dict[str, Any] | None) -> None:
    """The resumable checkpoint after ``epoch`` and the epoch's line of ``log.jsonl``."""
    atomic_torch_save(
        {
            "epoch": epoch + 1,
            "state_dict": linear_state_dict(probe.classifier),
            "optimizer": probe.optimizer.state_dict(),
            "scheduler": probe.scheduler.state_dict(),
            "best_acc": done.best_acc,
            "best_epoch": done.best_epoch,
            "history": done.history,
            "signature": signature,
        },
        out / CHECKPOINT_NAME,
    )
    with (out / "log.jsonl").open("a" if epoch else "w") as fh:
        fh.write(json.dumps(done.history[-1]) + "\n")
