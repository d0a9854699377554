"""What this CPU can do for matrix products: model name, the instruction-set flags that matter, native bf16.

``precision: auto`` picks bf16 on a CPU only where it is native. CPUs differ: AVX-512 BF16 and AMX (Intel Cooper
Lake, Sapphire Rapids and later; AMD Zen 4 and later) or the Arm BF16 extension run bf16 products several times
faster than fp32, while a CPU with only AVX2 emulates bf16 and is 10-100x *slower* than fp32. The decision is made
from the CPU flags the operating system reports (deterministic, no timing noise); ``DINO_LIB_CPU_BF16=0|1``
overrides it, and :func:`measure_bf16_slowdown` times both precisions when a warning needs the actual ratio.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import dataclass

import torch

__all__ = ["CpuInfo", "cpu_info", "cpu_has_native_bf16", "measure_bf16_slowdown", "MATMUL_FLAGS"]

# Flags worth reporting for matmul speed (x86 names from /proc/cpuinfo; "bf16" is the Arm extension).
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve", "bf16")
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as far as matrix products care."""

    model: str
    arch: str
    flags: tuple[str, ...]
    threads: int

    @property
    def native_bf16(self) -> bool:
        return bool(_NATIVE_BF16_FLAGS.intersection(self.flags))

    def as_dict(self) -> dict[str, object]:
        return {
            "cpu_model": self.model,
            "cpu_arch": self.arch,
            "cpu_flags": list(self.flags),
            "torch_threads": self.threads,
            "native_bf16": self.native_bf16,
        }


def _linux_cpuinfo() -> tuple[str, set[str]]:
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def _darwin_cpuinfo() -> tuple[str, set[str]]:
    def sysctl(name: str) -> str:
        try:
            return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    flags = {"asimd"} if platform.machine() == "arm64" else set()
    if sysctl("hw.optional.arm.FEAT_BF16") == "1":
        flags.add("bf16")
    return sysctl("machdep.cpu.brand_string"), flags


@functools.cache
def cpu_info() -> CpuInfo:
    """Model, matmul-relevant flags and torch's thread count of this machine's CPU (cached per process)."""
    model, flags = _darwin_cpuinfo() if platform.system() == "Darwin" else _linux_cpuinfo()
    relevant = tuple(f for f in MATMUL_FLAGS if f in flags)
    return CpuInfo(model or platform.processor() or "unknown", platform.machine(), relevant, torch.get_num_threads())


def cpu_has_native_bf16() -> bool:
    """Native bf16 on this CPU: ``DINO_LIB_CPU_BF16`` when set (0/1), else the CPU flags."""
    override = os.environ.get("DINO_LIB_CPU_BF16", "").strip().lower()
    if override in ("0", "false", "no", "off"):
        return False
    if override in ("1", "true", "yes", "on"):
        return True
    return cpu_info().native_bf16


@functools.cache
def measure_bf16_slowdown(size: int = 512, repeats: int = 2) -> float:
    """How many times slower a bf16 matrix product is than fp32 on this CPU (``< 1`` means bf16 is faster)."""
    from dino_lib.runtime.perf import measure_matmul_peak  # the benchmarks' matmul timer (imported late: it imports us)

    fp32 = measure_matmul_peak(torch.float32, n=size, repeats=repeats)
    return fp32 / max(measure_matmul_peak(torch.bfloat16, n=size, repeats=repeats), 1.0)
