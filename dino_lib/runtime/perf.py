"""Performance helpers shared by every benchmark: machine header, matmul peaks, MFU, ViT FLOPs, memory, a timer.

Model FLOPs utilisation (MFU) = model FLOPs per second / the FLOP/s a large square matmul reaches on the same
machine in the precision actually used. FLOPs count a multiply-add as 2 and only the matrix products, which
dominate a ViT forward (Dosovitskiy et al., 2021; Kaplan et al., 2020 use the same convention).

Benchmarks must mean the same thing on any machine, so each one prints :func:`machine_header` (CPU model and its
matmul flags, threads, what ``precision: auto`` resolves to, the measured peaks) and reports utilisation through
:func:`mfu_report`. A precision whose matmul peak is below 5% of the fp32 peak is emulated, not supported (bf16 on
an AVX2-only CPU runs at about 2% of fp32): its MFU would be a large number against a meaningless peak, so it is
reported as "no native support" instead.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from dino_lib.runtime.cpu import cpu_info
from dino_lib.runtime.precision import PRECISION_CHOICES, resolve_precision

__all__ = [
    "NO_NATIVE_FRACTION",
    "benchmark_precisions",
    "machine_header",
    "measure_matmul_peak",
    "measure_peaks",
    "mfu_report",
    "vit_forward_flops",
    "peak_rss_mb",
    "Timer",
]

# A precision whose matmul peak is below this fraction of the fp32 peak is emulated on this machine.
NO_NATIVE_FRACTION = 0.05
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def measure_matmul_peak(
    dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 5, device: torch.device | str = "cpu"
) -> float:
    """FLOP/s of an ``n x n`` by ``n x n`` matmul on ``device``, best of ``repeats`` after one warm-up.

    For ``torch.bfloat16`` the operands are bf16 tensors, i.e. the oneDNN bf16 kernel that ``nn.Linear`` reaches
    under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (autocast casts the operands, then calls this kernel).

    Args:
        dtype: operand dtype (``torch.float32`` or ``torch.bfloat16``).
        n: matrix side. 1024 reaches the plateau on the build machines (2 AVX-512 cores: 0.22 TFLOP/s fp32, 0.90
            bf16); 2048 reads about half of that for bf16 there (operands no longer fit the caches).
        repeats: timed runs; the fastest is kept (least disturbed by other processes).
        device: where to multiply (CUDA is synchronised around each product).

    Returns:
        FLOP/s (``2 n^3`` FLOPs per product).
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        torch.mm(a, b)  # warm-up: oneDNN/cuBLAS primitive creation, page faults
        sync()
        best = float("inf")
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            torch.mm(a, b)
            sync()
            best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def measure_peaks(
    precisions: Iterable[str] = ("fp32",),
    device: torch.device | str = "cpu",
    *,
    n: int | None = None,
    repeats: int = 3,
) -> dict[str, float]:
    """Square-matmul FLOP/s of fp32 and of each precision in ``precisions`` on ``device``.

    fp32 is always measured (the reference for the "no native support" rule). On the CPU a low-precision type is
    first probed with a small (256) product: an emulated type (below :data:`NO_NATIVE_FRACTION` of fp32) is then
    left at that probe, since a full-size emulated product takes seconds and the verdict cannot change.

    Args:
        precisions: resolved precisions (``fp32``, ``bf16``, ``fp16``).
        device: where the benchmark runs.
        n: matrix side; default 1024 on the CPU (the plateau there), 4096 on a GPU.
        repeats: timed products per precision (the best is kept).
    """
    device = torch.device(device)
    n = n or (4096 if device.type == "cuda" else 1024)
    peaks = {"fp32": measure_matmul_peak(torch.float32, n=n, repeats=repeats, device=device)}
    for precision in dict.fromkeys(precisions):
        if precision in peaks:
            continue
        dtype = _DTYPES[precision]
        if device.type == "cpu":
            probe = measure_matmul_peak(dtype, n=min(n, 256), repeats=2, device=device)
            if probe < NO_NATIVE_FRACTION * peaks["fp32"]:
                peaks[precision] = probe
                continue
        peaks[precision] = measure_matmul_peak(dtype, n=n, repeats=repeats, device=device)
    return peaks


def mfu_report(flops_per_s: float, precision: str, peaks: Mapping[str, float]) -> dict[str, object]:
    """Achieved FLOP/s and MFU against the peak of ``precision`` (resolved), or why no MFU is given.

    Returns:
        ``{"precision", "achieved_gflops", "peak_gflops", "mfu"}``; for a precision whose peak is below
        :data:`NO_NATIVE_FRACTION` of the fp32 peak, ``"mfu": None`` and a ``"note"`` that says so.
    """
    peak, fp32 = peaks[precision], peaks["fp32"]
    report: dict[str, object] = {
        "precision": precision,
        "achieved_gflops": round(flops_per_s / 1e9, 2),
        "peak_gflops": round(peak / 1e9, 2),
    }
    if precision != "fp32" and peak < NO_NATIVE_FRACTION * fp32:
        report["mfu"] = None
        report["note"] = (
            f"no native {precision} support: {precision} peak {peak / 1e9:.3g} GFLOP/s is "
            f"< {NO_NATIVE_FRACTION:.0%} of fp32 {fp32 / 1e9:.3g}"
        )
    else:
        report["mfu"] = round(flops_per_s / peak, 4)
    return report


def benchmark_precisions(spec: str | None, device: torch.device | str = "cpu") -> list[str]:
    """The resolved precisions a benchmark times.

    ``None`` (the default of every benchmark) means ``auto``, plus fp32 for comparison when ``auto`` is not fp32,
    so bf16 is only timed where it is native. An explicit comma list (``fp32,bf16``) is taken as asked, resolved
    with :func:`dino_lib.runtime.resolve_precision` (which warns when bf16 is emulated).

    Raises:
        ValueError: an unknown name.
    """
    names = ["auto", "fp32"] if spec is None else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in names if s not in PRECISION_CHOICES]
    if unknown or not names:
        raise ValueError(f"--precision: expected a comma list of {list(PRECISION_CHOICES)}, found {spec!r}")
    return list(dict.fromkeys(resolve_precision(s, device) for s in names))


def machine_header(device: torch.device | str = "cpu", peaks: Mapping[str, float] | None = None) -> dict[str, object]:
    """What a benchmark number depends on: CPU (model, matmul flags, threads), GPU, torch, ``auto``, peaks, load.

    Args:
        device: where the benchmark runs.
        peaks: FLOP/s per precision from :func:`measure_peaks`, reported in GFLOP/s.
    """
    device = torch.device(device)
    header: dict[str, object] = {
        "device": str(device),
        **cpu_info().as_dict(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "precision_auto": resolve_precision("auto", device),
    }
    if device.type == "cuda":
        header["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        header["load_average_1min"] = round(os.getloadavg()[0], 2)  # other processes on a shared machine
    if peaks:
        header["matmul_peak_gflops"] = {k: round(v / 1e9, 2) for k, v in peaks.items()}
    return header


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
