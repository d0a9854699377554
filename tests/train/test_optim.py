"""Parameter groups, LARS, per-parameter clipping, last-layer freezing and EMA."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from dino_lib.models import DINOHead, MultiCropWrapper, build_backbone
from dino_lib.train.ema import EMA
from dino_lib.train.grad import cancel_gradients_last_layer, clip_gradients
from dino_lib.train.optim import LARS, build_optimizer, get_params_groups


def tiny_model(norm_last_layer=True):
    torch.manual_seed(0)
    bb = build_backbone("vit_tiny", depth=1, embed_dim=16, num_heads=2)
    return MultiCropWrapper(bb, DINOHead(16, 12, hidden_dim=8, bottleneck_dim=4, norm_last_layer=norm_last_layer))


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_param_group_membership(norm_last_layer):
    model = tiny_model(norm_last_layer)
    reg, noreg = get_params_groups(model)
    assert noreg["weight_decay"] == 0.0
    for name, p in model.named_parameters():
        expected_noreg = name.endswith(".bias") or p.ndim == 1
        if not p.requires_grad:
            assert name not in reg["param_names"] + noreg["param_names"]
        elif expected_noreg:
            assert name in noreg["param_names"]
        else:
            assert name in reg["param_names"]
    assert "backbone.cls_token" in reg["param_names"] and "backbone.pos_embed" in reg["param_names"]
    assert "backbone.norm.weight" in noreg["param_names"]
    g = "head.last_layer.parametrizations.weight.original0"
    assert (g in reg["param_names"]) == (not norm_last_layer)


def test_optimizers_build():
    groups = get_params_groups(tiny_model())
    adamw = build_optimizer("adamw", groups)
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["fused"]  # CPU parameters: the fused kernel
    assert build_optimizer("sgd", get_params_groups(tiny_model())).param_groups[0]["momentum"] == 0.9
    assert isinstance(build_optimizer("lars", get_params_groups(tiny_model())), LARS)
    with pytest.raises(ValueError):
        build_optimizer("adam", groups)


def test_lars_step_rederived():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0, 2.0]))
    w.grad, b.grad = torch.tensor([[0.0, 1.0]]), torch.tensor([0.5, 0.5])
    opt = LARS([w, b], lr=0.1, weight_decay=0.1, momentum=0.9, eta=0.001)
    opt.step()
    d = torch.tensor([[0.3, 1.4]])  # g + wd * w
    d = d * (0.001 * 5.0 / d.norm())
    assert torch.allclose(w.data, torch.tensor([[3.0, 4.0]]) - 0.1 * d)
    assert torch.allclose(b.data, torch.tensor([1.0, 2.0]) - 0.1 * torch.tensor([0.5, 0.5]))  # 1-D: no wd/trust


def test_per_parameter_clipping():
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.1, 0.0])
    m = nn.Module()
    m.a, m.b = a, b
    norms = clip_gradients(m, 1.0)
    assert norms == pytest.approx([5.0, 0.1])
    assert torch.allclose(a.grad, torch.tensor([3.0, 4.0, 0.0]) * (1.0 / (5.0 + 1e-6)))
    assert torch.equal(b.grad, torch.tensor([0.1, 0.0]))  # below the threshold: untouched (not a global norm)


def test_fused_adamw_equals_foreach_up_to_rounding():
    """The fused AdamW the trainer uses is the same update as the foreach/loop one (only float rounding differs)."""
    models = [tiny_model(norm_last_layer=False) for _ in range(2)]
    opts = [build_optimizer("adamw", get_params_groups(models[0]))]
    opts.append(torch.optim.AdamW(get_params_groups(models[1]), foreach=True))
    for opt in opts:
        for g, group in enumerate(opt.param_groups):
            group["lr"], group["weight_decay"] = 1e-2, (0.04 if g == 0 else 0.0)
    x = torch.randn(4, 3, 32, 32)
    for _ in range(3):
        for model, opt in zip(models, opts):
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_freeze_last_layer_sets_none_and_skips_update():
    model = tiny_model(norm_last_layer=False)
    opt = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.5}], lr=0.1
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    cancel_gradients_last_layer(0, model, freeze_last_layer=1)
    for n, p in model.named_parameters():
        if "last_layer" in n:
            assert p.grad is None
    opt.step()
    for n, p in model.named_parameters():
        if "last_layer" in n:
            assert torch.equal(p, before[n])  # no Adam update and no decoupled weight decay
    model.zero_grad()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    cancel_gradients_last_layer(1, model, freeze_last_layer=1)
    assert model.head.last_layer.parametrizations.weight.original1.grad is not None


def test_ema_by_name_parameters_only():
    student = tiny_model()
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    t0 = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    s = dict(student.named_parameters())
    EMA(student, teacher).update(0.9)
    for n, p in teacher.named_parameters():
        assert torch.allclose(p, 0.9 * t0[n] + 0.1 * s[n], atol=1e-6)
    other = build_backbone("vit_tiny", depth=2, embed_dim=16, num_heads=2)
    with pytest.raises(ValueError, match="differ"):
        EMA(student.backbone, other)
