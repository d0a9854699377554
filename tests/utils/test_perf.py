"""Performance helpers: analytic ViT FLOPs against a hand count and PyTorch's FLOP counter."""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dino_lib.models import DinoVisionTransformer, build_backbone
from dino_lib.utils.perf import Timer, measure_matmul_peak, peak_rss_mb, vit_forward_flops


def test_vit_flops_hand_count() -> None:
    model = DinoVisionTransformer(patch_size=16, embed_dim=32, depth=2, num_heads=2)
    # 32 x 48 image -> 2 x 3 = 6 patches, T = 7 tokens, D = 32, MLP 128
    patch = 2 * 6 * (3 * 16 * 16) * 32  # 294,912
    block = 2 * 7 * 32 * 96 + 2 * 2 * 7 * 7 * 32 + 2 * 7 * 32 * 32 + 2 * 7 * 32 * 128 * 2  # 43,008+6,272+14,336+114,688
    assert vit_forward_flops(model, (32, 48), batch=3) == 3 * (patch + 2 * block)
    assert vit_forward_flops(model, (32, 48), batch=3) == 3 * (294_912 + 2 * 178_304)
    assert vit_forward_flops(model, (47, 63), batch=1) == vit_forward_flops(model, (32, 48))  # floored sides


def test_vit_flops_agree_with_torch_flop_counter() -> None:
    for model in (
        build_backbone("vit_tiny", depth=2),
        build_backbone("timm:vit_tiny_patch16_224", depth=2, dynamic_img_size=True),
    ):
        for blk in model.blocks:  # the counter has no formula for the CPU flash-attention op: use explicit matmuls
            blk.attn.fused_attn = False
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(2, 3, 64, 96))
        assert vit_forward_flops(model, (64, 96), batch=2) == counter.get_total_flops()


def test_matmul_peak_is_plausible() -> None:
    start = time.perf_counter()
    fp32 = measure_matmul_peak(torch.float32, n=256, repeats=2)
    bf16 = measure_matmul_peak(torch.bfloat16, n=256, repeats=2)
    assert 1e8 < fp32 < 1e14 and 1e8 < bf16 < 1e15
    assert time.perf_counter() - start < 10


def test_peak_rss_and_timer() -> None:
    before = peak_rss_mb()
    assert before > 10
    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB touched
    assert peak_rss_mb() >= before
    del block
    timer = Timer()
    for _ in range(2):
        with timer:
            time.sleep(0.01)
    assert len(timer.laps) == 2
    assert 0.009 <= timer.best <= timer.seconds


def test_cpu_description_names_the_machine() -> None:
    from dino_lib.utils.perf import MATMUL_FLAGS, cpu_description

    info = cpu_description()
    assert isinstance(info["model"], str) and info["model"]
    assert info["torch_threads"] >= 1 and info["cores"] >= 1
    if info["matmul_flags"] is not None:  # Linux: a subset of the known flags, in their listed order
        assert [f for f in MATMUL_FLAGS if f in info["matmul_flags"]] == info["matmul_flags"]
