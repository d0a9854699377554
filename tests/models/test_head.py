"""DINOHead and MultiCropWrapper."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dino_lib.models import DINOHead, MultiCropWrapper
from dino_lib.models.multicrop import crop_runs


def test_state_dict_uses_reference_keys_and_shapes():
    head = DINOHead(32, 64, hidden_dim=16, bottleneck_dim=8)
    sd = head.state_dict()
    assert list(sd) == [
        "mlp.0.weight",
        "mlp.0.bias",
        "mlp.2.weight",
        "mlp.2.bias",
        "mlp.4.weight",
        "mlp.4.bias",
        "last_layer.weight_g",
        "last_layer.weight_v",
    ]
    assert sd["last_layer.weight_g"].shape == (64, 1) and torch.all(sd["last_layer.weight_g"] == 1)
    assert sd["last_layer.weight_v"].shape == (64, 8)
    bn = DINOHead(32, 64, hidden_dim=16, bottleneck_dim=8, use_bn=True).state_dict()
    assert {k.rsplit(".", 1)[0] for k in bn if k.startswith("mlp.")} == {"mlp.0", "mlp.1", "mlp.3", "mlp.4", "mlp.6"}


def test_legacy_weight_norm_state_loads_and_matches():
    torch.manual_seed(0)
    head = DINOHead(32, 64, hidden_dim=16, bottleneck_dim=8, norm_last_layer=False)
    with torch.no_grad():
        head.last_layer.parametrizations.weight.original0.uniform_(0.5, 2.0)
    # An independent legacy head: plain MLP + torch.nn.utils.weight_norm (the reference construction).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy_last = nn.utils.weight_norm(nn.Linear(8, 64, bias=False))
    mlp = nn.Sequential(nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 8))
    legacy = nn.ModuleDict({"mlp": mlp, "last_layer": legacy_last})
    legacy.load_state_dict(head.state_dict())  # same key names in both directions
    x = torch.randn(5, 32)
    ref = legacy_last(F.normalize(mlp(x), dim=-1))
    assert torch.allclose(head(x), ref, atol=1e-6)
    fresh = DINOHead(32, 64, hidden_dim=16, bottleneck_dim=8)
    fresh.load_state_dict(legacy.state_dict())
    assert torch.allclose(fresh(x), ref, atol=1e-6)


def test_norm_last_layer_freezes_g_and_gives_cosines():
    head = DINOHead(16, 32, hidden_dim=8, bottleneck_dim=4)
    trainable = [n for n, p in head.named_parameters() if p.requires_grad]
    assert "last_layer.parametrizations.weight.original0" not in trainable
    out = head(torch.randn(10, 16) * 10)
    assert out.abs().max() <= 1.0 + 1e-5
    free = DINOHead(16, 32, hidden_dim=8, bottleneck_dim=4, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad


def test_single_layer_head():
    head = DINOHead(16, 32, nlayers=1, bottleneck_dim=4)
    assert isinstance(head.mlp, nn.Linear) and head(torch.randn(2, 16)).shape == (2, 32)


def test_crop_runs_only_merge_consecutive_widths():
    assert crop_runs([224, 224, 96, 96, 96]) == [(0, 2), (2, 5)]
    assert crop_runs([224, 96, 224]) == [(0, 1), (1, 2), (2, 3)]


class _CountingBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls, self.fc = [], nn.Linear(3, 3)

    def forward(self, x):
        self.calls.append(x.shape[0])
        return x.mean(dim=(2, 3)) + x.shape[-1]  # (N, 3); encodes the crop width


def test_multicrop_wrapper_batches_runs_crop_major():
    bb = _CountingBackbone()
    head_calls = []
    head = nn.Identity()
    head.register_forward_hook(lambda m, i, o: head_calls.append(i[0].shape[0]))
    wrapper = MultiCropWrapper(bb, head)
    assert isinstance(bb.fc, nn.Identity)  # classifier removed
    b = 4
    crops = [torch.full((b, 3, 16, 16), float(i)) for i in range(2)] + [
        torch.full((b, 3, 8, 8), 10.0 + i) for i in range(3)
    ]
    out = wrapper(crops)
    assert bb.calls == [2 * b, 3 * b] and head_calls == [5 * b]
    expected = torch.cat([c.mean(dim=(2, 3)) + c.shape[-1] for c in crops])
    assert torch.equal(out, expected)
    assert wrapper(torch.zeros(2, 3, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("arch", ["vit"])
def test_multicrop_with_vit_backbone(arch):
    from dino_lib.models import build_backbone

    bb = build_backbone("vit_tiny", depth=1, embed_dim=32, num_heads=2)
    w = MultiCropWrapper(bb, DINOHead(32, 16, hidden_dim=8, bottleneck_dim=4))
    out = w([torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32), torch.randn(2, 3, 16, 16)])
    assert out.shape == (6, 16)
