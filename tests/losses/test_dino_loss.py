"""DINOLoss against a plain re-derivation of the DINO loss (pairs, centering, per-epoch temperature)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dino_lib.losses import DINOLoss, teacher_temp_schedule


def reference_loss(s, t, center, ncrops, tau_s, tau_t):
    """Straightforward loop over (teacher chunk, student chunk) pairs, as written in the spec."""
    b = t.shape[0] // 2
    s_chunks = [s[i * b : (i + 1) * b] for i in range(ncrops)]
    t_chunks = [t[i * b : (i + 1) * b] for i in range(2)]
    total, n = 0.0, 0
    for iq, tq in enumerate(t_chunks):
        q = torch.softmax((tq - center) / tau_t, dim=-1)
        for v, sv in enumerate(s_chunks):
            if v == iq:
                continue
            logp = torch.log_softmax(sv / tau_s, dim=-1)
            total = total + (-(q * logp).sum(-1)).mean()
            n += 1
    return total / n, n


@pytest.mark.parametrize("ncrops,b,k", [(2, 3, 16), (4, 2, 32), (10, 2, 64)])
@pytest.mark.parametrize("epoch", [0, 2, 4])
def test_loss_and_center_match_rederivation(ncrops, b, k, epoch):
    g = torch.Generator().manual_seed(ncrops * 100 + epoch)
    loss_fn = DINOLoss(k, ncrops, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=3, nepochs=5)
    loss_fn.center.copy_(torch.randn(1, k, generator=g) * 0.1)
    old_center = loss_fn.center.clone()
    s = torch.randn(ncrops * b, k, generator=g)
    t = torch.randn(2 * b, k, generator=g)
    tau_t = [0.04, 0.055, 0.07, 0.07, 0.07][epoch]
    expected, n_pairs = reference_loss(s, t, old_center, ncrops, 0.1, tau_t)
    assert n_pairs == 2 * ncrops - 2
    got = loss_fn(s, t, epoch)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-6)
    # center updated after the loss, from raw teacher logits: 0.9 old + 0.1 batch mean
    assert torch.allclose(loss_fn.center, 0.9 * old_center + 0.1 * t.mean(0, keepdim=True), atol=1e-6)
    q = torch.softmax((t - old_center) / tau_t, -1)
    ent = -torch.special.xlogy(q, q).sum(-1).mean()
    assert abs(float(loss_fn.last_stats["teacher_entropy"]) - float(ent)) < 1e-4


def test_uniform_teacher_gives_ln_k():
    k, b = 128, 4
    loss_fn = DINOLoss(k, 4, 0.04, 0.04, 0, 1)
    s = torch.zeros(4 * b, k)
    t = torch.zeros(2 * b, k)
    assert math.isclose(float(loss_fn(s, t, 0)), math.log(k), rel_tol=1e-6)


def test_gradient_flows_to_student_only():
    loss_fn = DINOLoss(8, 3, 0.04, 0.04, 0, 1)
    s = torch.randn(6, 8, requires_grad=True)
    t = torch.randn(4, 8, requires_grad=True)
    loss_fn(s, t, 0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_teacher_temperature_schedule():
    sched = teacher_temp_schedule(0.04, 0.07, 30, 100)
    assert len(sched) == 100
    assert sched[0] == pytest.approx(0.04) and sched[29] == pytest.approx(0.07) and sched[30] == pytest.approx(0.07)
    assert np.allclose(np.diff(sched[:30]), 0.03 / 29)
    loss_fn = DINOLoss(4, 2, 0.04, 0.07, 2, 3)
    with pytest.raises(IndexError):
        loss_fn(torch.randn(4, 4), torch.randn(4, 4), 3)
    with pytest.raises(ValueError):
        teacher_temp_schedule(0.04, 0.07, 5, 3)


def test_wrong_student_rows_rejected():
    with pytest.raises(ValueError, match="ncrops"):
        DINOLoss(4, 3, 0.04, 0.04, 0, 1)(torch.randn(4, 4), torch.randn(4, 4), 0)


def test_sinkhorn_knopp_targets_share_the_prototypes():
    """Each target row is a distribution and the batch uses every prototype about equally, even when the raw teacher
    logits all point at one prototype (the collapse the running center fights slowly)."""
    from dino_lib.losses.dino_loss import sinkhorn_knopp

    torch.manual_seed(0)
    logits = torch.randn(64, 16) * 0.1
    logits[:, 3] += 0.25  # every sample prefers prototype 3
    q = sinkhorn_knopp(logits, temp=0.04, iterations=3)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-5)
    usage = q.sum(dim=0) / 64
    assert usage.max() < 2.0 / 16 and usage.min() > 0.5 / 16
    plain = torch.softmax(logits / 0.04, dim=-1).sum(dim=0) / 64
    assert plain[3] > 0.5  # without the iterations the batch would collapse onto one prototype


def test_sinkhorn_knopp_centering_is_stable_at_sharp_temperatures():
    """Sharp temperatures cannot overflow, the loss is finite, and no center is kept."""
    loss_fn = DINOLoss(32, 4, 0.001, 0.001, 0, 2, centering="sinkhorn_knopp")
    student = torch.randn(4 * 8, 32, requires_grad=True)
    teacher = torch.randn(2 * 8, 32) * 50
    loss = loss_fn(student, teacher, 0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    assert loss_fn.center.abs().sum() == 0  # the running center is not used, nor updated
    assert 0 <= float(loss_fn.last_stats["teacher_entropy"]) <= math.log(32) + 1e-4


def test_unknown_centering_rejected():
    with pytest.raises(ValueError, match="centering"):
        DINOLoss(8, 4, 0.04, 0.04, 0, 1, centering="mean")
