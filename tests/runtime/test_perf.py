"""Performance helpers: analytic ViT FLOPs against a hand count and PyTorch's FLOP counter."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dino_lib.models import DinoVisionTransformer, build_backbone
from dino_lib.runtime import cpu_has_native_bf16, cpu_info
from dino_lib.runtime.perf import (
    NO_NATIVE_FRACTION,
    Timer,
    benchmark_precisions,
    machine_header,
    measure_matmul_peak,
    measure_peaks,
    mfu_report,
    peak_rss_mb,
    vit_forward_flops,
)


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


def test_mfu_report_flags_a_precision_without_native_support() -> None:
    peaks = {"fp32": 40e9, "bf16": 0.9e9}  # an AVX2 CPU: emulated bf16 at ~2% of fp32
    emulated = mfu_report(0.5e9, "bf16", peaks)
    assert emulated["mfu"] is None
    assert emulated["note"] == "no native bf16 support: bf16 peak 0.9 GFLOP/s is < 5% of fp32 40"
    assert mfu_report(20e9, "fp32", peaks) == {
        "precision": "fp32",
        "achieved_gflops": 20.0,
        "peak_gflops": 40.0,
        "mfu": 0.5,
    }
    native = mfu_report(60e9, "bf16", {"fp32": 200e9, "bf16": 900e9})  # an AVX-512 BF16 / AMX CPU
    assert native["mfu"] == round(60 / 900, 4) and "note" not in native
    edge = {"fp32": 100e9, "bf16": NO_NATIVE_FRACTION * 100e9}  # exactly 5%: counted as native
    assert mfu_report(1e9, "bf16", edge)["mfu"] == 0.2


def test_machine_header_describes_this_machine() -> None:
    header = machine_header("cpu", {"fp32": 40e9})
    info = cpu_info()
    assert header["cpu_model"] == info.model and header["cpu_flags"] == list(info.flags)
    assert header["threads"] == torch.get_num_threads() and header["device"] == "cpu"
    assert header["precision_auto"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert header["matmul_peak_gflops"] == {"fp32": 40.0}
    json.dumps(header)  # benchmarks print it as JSON


def test_benchmark_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DINO_LIB_CPU_BF16", "0")
    assert benchmark_precisions(None, "cpu") == ["fp32"]  # bf16 is never timed by default where it is emulated
    assert benchmark_precisions("auto,fp32", "cpu") == ["fp32"]
    monkeypatch.setenv("DINO_LIB_CPU_BF16", "1")
    assert benchmark_precisions(None, "cpu") == ["bf16", "fp32"]
    assert benchmark_precisions("fp32", "cpu") == ["fp32"]
    with pytest.raises(ValueError, match="--precision"):
        benchmark_precisions("float32", "cpu")


def test_measure_peaks_measures_fp32_and_each_asked_precision() -> None:
    peaks = measure_peaks(["fp32", "bf16"], "cpu", n=256, repeats=1)
    assert set(peaks) == {"fp32", "bf16"} and all(v > 1e7 for v in peaks.values())
    native = cpu_info().native_bf16
    assert (peaks["bf16"] >= NO_NATIVE_FRACTION * peaks["fp32"]) or not native
