"""DINO loss with centering and a per-epoch teacher temperature (Caron et al., 2021).

Reference: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
(arXiv 2104.14294); original code github.com/facebookresearch/dino.

For teacher chunks ``i in {0, 1}`` (the two global crops) and student chunks ``v != i`` the loss is the
cross-entropy ``-sum_k q_ik log p_vk`` averaged over the batch, then averaged over the ``2 * ncrops - 2`` pairs.
The teacher softmax uses ``(t - center) / tau_t(epoch)``; the center is updated **after** the loss from the raw
teacher logits (momentum 0.9, mean over all processes).

``centering="sinkhorn_knopp"`` replaces the centred softmax of the teacher by a few Sinkhorn-Knopp iterations over
the batch (Oquab et al., "DINOv2", 2023, following SwAV, Caron et al., 2020): the targets of the batch are forced
to use every prototype equally, which rules out both collapses (one dominant prototype, or a uniform teacher)
without a running center. It needs batches with at least as many teacher rows as prototypes: with fewer, the equal
use of K prototypes spreads every row over several of them and the targets go flat (measured on 32-image batches
with K = 256 and K = 64: the k-NN of the teacher fell). The paper default stays ``"center"``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CENTERINGS", "CENTER_MOMENTUM", "DINOLoss", "STUDENT_TEMP", "sinkhorn_knopp", "teacher_temp_schedule"]

CENTERINGS = ("center", "sinkhorn_knopp")
# The paper's defaults, shared with the training configuration.
STUDENT_TEMP = 0.1
CENTER_MOMENTUM = 0.9


def teacher_temp_schedule(
    warmup_teacher_temp: float, teacher_temp: float, warmup_epochs: int, nepochs: int
) -> np.ndarray:
    """Per-epoch teacher temperature: ``linspace`` over the warm-up epochs (endpoints included), then constant."""
    if warmup_epochs > nepochs:
        raise ValueError(f"warmup_teacher_temp_epochs ({warmup_epochs}) exceeds the number of epochs ({nepochs})")
    return np.concatenate(
        (np.linspace(warmup_teacher_temp, teacher_temp, warmup_epochs), np.ones(nepochs - warmup_epochs) * teacher_temp)
    )


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temp: float, iterations: int = 3) -> torch.Tensor:
    """Teacher targets ``(N, K)`` whose rows sum to 1 and whose columns share the batch equally.

    Alternately normalises the prototypes (columns) to mass ``1 / K`` and the samples (rows) to ``1 / N`` over the
    global batch (summed over every process when distributed), starting from ``exp(t / temp)``; the maximum is
    subtracted first so that sharp temperatures cannot overflow.
    """
    distributed = dist.is_available() and dist.is_initialized()
    scores = teacher_logits.float() / temp
    top = scores.max().detach()
    if distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(scores - top).t()  # (K, N)
    n_total = q.shape[1] * (dist.get_world_size() if distributed else 1)
    n_prototypes = q.shape[0]
    total = q.sum()
    if distributed:
        dist.all_reduce(total)
    q /= total
    for _ in range(iterations):
        per_prototype = q.sum(dim=1, keepdim=True)
        if distributed:
            dist.all_reduce(per_prototype)
        q /= per_prototype.clamp_min(1e-30) * n_prototypes
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-30) * n_total
    return (q * n_total).t()


class DINOLoss(nn.Module):
    """Cross-entropy between the centred, sharpened teacher and the student over all cross-view pairs.

    Args:
        out_dim: K, the head output size (size of the ``center`` buffer).
        ncrops: number of student crops (2 global + local crops).
        warmup_teacher_temp: teacher temperature at epoch 0.
        teacher_temp: teacher temperature after the warm-up.
        warmup_teacher_temp_epochs: epochs of linear temperature warm-up.
        nepochs: total epochs (length of the temperature schedule).
        student_temp: student temperature (0.1).
        center_momentum: EMA momentum of the center (0.9).
        centering: ``"center"`` (the paper's running center) or ``"sinkhorn_knopp"`` (batch equipartition, no
            center; see the module docstring).

    After each call, ``last_stats`` holds detached scalar tensors: ``teacher_entropy`` (mean entropy of the teacher
    distribution, in nats), ``teacher_temp`` and ``center_norm`` (after the update); reading them syncs the host,
    so the trainer only does it when it logs.
    """

    def __init__(
        self,
        out_dim: int,
        ncrops: int,
        warmup_teacher_temp: float,
        teacher_temp: float,
        warmup_teacher_temp_epochs: int,
        nepochs: int,
        student_temp: float = STUDENT_TEMP,
        center_momentum: float = CENTER_MOMENTUM,
        centering: str = "center",
    ) -> None:
        super().__init__()
        if ncrops < 2:
            raise ValueError(f"DINOLoss needs at least the two global crops, found ncrops={ncrops}")
        if centering not in CENTERINGS:
            raise ValueError(f"centering must be one of {CENTERINGS}, got {centering!r}")
        self.centering = centering
        self.out_dim = out_dim
        self.ncrops = ncrops
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temp_schedule = teacher_temp_schedule(
            warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs
        )
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(
        self, student_output: torch.Tensor, teacher_output: torch.Tensor, epoch: int, *, update_center: bool = True
    ) -> torch.Tensor:
        """Loss for one batch; also updates the center.

        Args:
            student_output: ``(ncrops * B, K)`` crop-major student logits.
            teacher_output: ``(2 * B, K)`` crop-major teacher logits (global crops only).
            epoch: current epoch (indexes the temperature schedule; out of range raises IndexError).
            update_center: False for a micro-batch of gradient accumulation; the caller then calls
                :meth:`update_center` once with the teacher outputs of the whole batch.
        """
        n_teacher = teacher_output.shape[0] // 2
        if student_output.shape[0] != self.ncrops * n_teacher:
            raise ValueError(
                f"student output has {student_output.shape[0]} rows, expected ncrops * B = {self.ncrops} * {n_teacher}"
            )
        # The loss is always computed in fp32, whatever the autocast dtype of the forwards.
        student_output = student_output.float()
        teacher_output = teacher_output.detach().float()
        temp = float(self.teacher_temp_schedule[epoch])
        log_p = F.log_softmax(student_output / self.student_temp, dim=-1).view(self.ncrops, n_teacher, -1)
        if self.centering == "sinkhorn_knopp":
            q = sinkhorn_knopp(teacher_output, temp).view(2, n_teacher, -1)
            log_q = q.clamp_min(1e-30).log()
        else:
            log_q = F.log_softmax((teacher_output - self.center) / temp, dim=-1).view(2, n_teacher, -1)
            q = log_q.exp()  # (2, B, K)
        # All (teacher chunk, student chunk) cross-entropies at once; same-view pairs are masked out.
        cross = -torch.einsum("ibk,vbk->iv", q, log_p) / n_teacher  # (2, ncrops)
        mask = torch.ones_like(cross, dtype=torch.bool)
        mask[0, 0] = mask[1, 1] = False
        loss = cross[mask].sum() / mask.sum()
        with torch.no_grad():
            entropy = -(q * log_q).sum(-1).mean()
            if update_center:
                self.update_center(teacher_output)
            self.last_stats = {
                "teacher_entropy": entropy,
                "teacher_temp": torch.tensor(temp),
                "center_norm": self.center.norm(),
            }
        return loss

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """EMA of the batch mean of raw teacher logits, averaged over every process when distributed (no-op under
        Sinkhorn-Knopp centering, which keeps no center)."""
        if self.centering != "center":
            return
        batch_center = teacher_output.sum(dim=0, keepdim=True)  # (1, K)
        count = teacher_output.shape[0]
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            count *= dist.get_world_size()
        batch_center = batch_center / count
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
