"""Small performance helpers for benchmarks: matmul peak, analytic ViT FLOPs, peak memory, a timer.

Model FLOPs utilisation (MFU) = model FLOPs per second / the FLOP/s a large square matmul reaches on the same
machine in the same dtype (environment.md §3). FLOPs count a multiply-add as 2 and only the matrix products,
which dominate a ViT forward (Dosovitskiy et al., 2021; Kaplan et al., 2020 use the same convention).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

__all__ = ["measure_matmul_peak", "vit_forward_flops", "peak_rss_mb", "Timer", "cpu_description", "MATMUL_FLAGS"]

#: CPU feature flags that decide which matmul kernels oneDNN / MKL can use (vector width, FMA, bf16/int8 units).
MATMUL_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def measure_matmul_peak(dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of an ``n x n`` by ``n x n`` matmul on the CPU, best of ``repeats`` after one warm-up.

    For ``torch.bfloat16`` the operands are bf16 tensors, i.e. the oneDNN bf16 kernel that ``nn.Linear`` reaches
    under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (autocast casts the operands, then calls this kernel).

    Args:
        dtype: operand dtype (``torch.float32`` or ``torch.bfloat16``).
        n: matrix side. 1024 reaches the plateau on the build machines (2 AVX-512 cores: 0.22 TFLOP/s fp32, 0.90
            bf16); 2048 reads about half of that for bf16 there (operands no longer fit the caches).
        repeats: timed runs; the fastest is kept (least disturbed by other processes).

    Returns:
        FLOP/s (``2 n^3`` FLOPs per product).
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    with torch.inference_mode():
        torch.mm(a, b)  # warm-up: oneDNN primitive creation, page faults
        best = float("inf")
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def vit_forward_flops(model: nn.Module, image_hw: tuple[int, int], batch: int = 1) -> int:
    """Matmul FLOPs of one forward of a timm-style ViT (ours or ``timm:vit_*``) on ``batch`` images.

    Counted: patch embedding (a matmul of every patch with the conv kernel), per block the qkv projection,
    the attention products ``Q K^T`` and ``A V``, the output projection and the two MLP layers. Not counted:
    softmax, LayerNorm, GELU, additions (a few percent at most).

    Args:
        model: a ViT with ``patch_embed.proj`` (Conv2d), ``blocks[i].attn.qkv`` and ``blocks[i].mlp.fc1/fc2``.
        image_hw: input size in pixels (sides are floored to whole patches, as the forward does).
        batch: number of images.
    """
    proj: nn.Conv2d = model.patch_embed.proj
    ph, pw = proj.kernel_size
    h, w = image_hw[0] // ph, image_hw[1] // pw
    n_patches = h * w
    tokens = n_patches + getattr(model, "num_prefix_tokens", 1)
    flops = 2 * n_patches * (proj.in_channels * ph * pw) * proj.out_channels
    for blk in model.blocks:
        dim = blk.attn.qkv.in_features
        flops += 2 * tokens * dim * blk.attn.qkv.out_features  # qkv
        flops += 2 * 2 * tokens * tokens * dim  # Q K^T and A V over all heads: heads * head_dim = dim
        flops += 2 * tokens * blk.attn.proj.in_features * blk.attn.proj.out_features  # output projection
        flops += 2 * tokens * blk.mlp.fc1.in_features * blk.mlp.fc1.out_features  # MLP up
        flops += 2 * tokens * blk.mlp.fc2.in_features * blk.mlp.fc2.out_features  # MLP down
    return int(batch * flops)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**2 if sys.platform == "darwin" else 1024)


@dataclass
class Timer:
    """Wall-clock timer: ``with Timer() as t: ...`` then ``t.seconds``; re-entering appends to ``t.laps``."""

    laps: list[float] = field(default_factory=list)
    _start: float = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.laps.append(time.perf_counter() - self._start)

    @property
    def seconds(self) -> float:
        """Duration of the last lap."""
        return self.laps[-1] if self.laps else 0.0

    @property
    def best(self) -> float:
        """Fastest lap (the least disturbed measurement)."""
        return min(self.laps) if self.laps else 0.0


def cpu_description() -> dict[str, object]:
    """CPU model name, its matmul-relevant flags (:data:`MATMUL_FLAGS`) and the torch thread count.

    Benchmarks print this beside their numbers: the same code runs 10-100x apart in bf16 depending on whether the
    CPU has native bf16 units (``avx512_bf16``/``amx_bf16``), so a number without the machine is not comparable.
    Reads ``/proc/cpuinfo`` (Linux); elsewhere the model comes from :mod:`platform` and the flags are unknown.
    """
    import platform

    model, flags = platform.processor() or platform.machine(), None
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key.strip() == "flags" and flags is None:
            present = set(value.split())
            flags = [f for f in MATMUL_FLAGS if f in present]
    import os

    return {"model": model, "matmul_flags": flags, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
