"""Forward throughput of a DINO ViT backbone, per precision, with model FLOPs utilisation.

Usage::

    python benchmarks/backbone.py [--quick] [--arch vit_small] [--patch-size 16] [--batch 8] [--image-size 224]
                                  [--precision auto|fp32|bf16,...] [--device cpu]

Prints ONE JSON object: the machine header (CPU model and matmul flags, threads, what ``precision: auto`` picks,
matmul peaks; :func:`dino_lib.runtime.perf.machine_header`) and, per variant, images/s (best of N timed forwards
after warm-ups, inference mode, variants timed round-robin) and MFU against the square-matmul peak of the precision
the variant uses, or "no native support" where that peak is under 5% of fp32's. By default the precision ``auto``
picks is timed (fp32 on a CPU without native bf16), plus fp32 when that is bf16. Variants per precision:

* fp32: ``fp32`` (eager) and ``fp32_channels_last`` (a channels-last input for the patch convolution);
* bf16: ``bf16_autocast`` (the library's option), ``bf16_weights`` (the model cast to bf16 once, inference only)
  and ``bf16_autocast_channels_last``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from dino_lib.models import build_backbone
from dino_lib.runtime import autocast, resolve_device
from dino_lib.runtime.perf import (
    benchmark_precisions,
    machine_header,
    measure_peaks,
    mfu_report,
    peak_rss_mb,
    vit_forward_flops,
)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_small")
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default=None, help="comma list of auto|fp32|bf16|fp16 (default: auto)")
    parser.add_argument("--device", default="cpu", help="auto|cpu|cuda|cuda:N")
    parser.add_argument("--quick", action="store_true", help="batch 2, 2 timed runs")
    args = parser.parse_args(argv)
    batch, repeats, warmup = args.batch, args.repeats, 2
    if args.quick:
        batch, repeats, warmup = min(batch, 2), min(repeats, 2), 1
    device = resolve_device(args.device)
    precisions = benchmark_precisions(args.precision, device)

    torch.manual_seed(0)
    model = build_backbone(args.arch, patch_size=args.patch_size).eval().to(device)
    x = torch.randn(batch, 3, args.image_size, args.image_size).to(device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    flops = vit_forward_flops(model, (args.image_size, args.image_size), batch)

    variants: dict[str, tuple[str, Callable[[], object]]] = {}
    for precision in precisions:
        if precision == "fp32":
            variants["fp32"] = ("fp32", lambda: model(x))
            variants["fp32_channels_last"] = ("fp32", lambda: model(x_cl))
            continue
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        cast = build_backbone(args.arch, patch_size=args.patch_size).eval()
        cast.load_state_dict(model.state_dict())
        cast = cast.to(device, dtype)
        variants[f"{precision}_autocast"] = (precision, lambda p=precision: _under(device, p, lambda: model(x)))
        variants[f"{precision}_weights"] = (precision, lambda m=cast, d=dtype: m(x.to(d)))
        variants[f"{precision}_autocast_channels_last"] = (
            precision,
            lambda p=precision: _under(device, p, lambda: model(x_cl)),
        )
    # Round-robin over the variants, keeping each one's best: a burst of load from other processes then hits
    # every variant alike instead of ruining one of them (machines are often shared).
    best = dict.fromkeys(variants, float("inf"))
    results = {}
    with torch.inference_mode():
        ref = model(x)
        for _ in range(warmup):
            for _, fn in variants.values():
                fn()
        for _ in range(repeats):
            for name, (_, fn) in variants.items():
                best[name] = min(best[name], _timed(fn, device))
        for name, (_, fn) in variants.items():
            out = fn()
            results[name] = {
                "seconds_per_batch": round(best[name], 4),
                "images_per_s": round(batch / best[name], 2),
                "max_abs_diff_vs_fp32": round((out.float() - ref.float()).abs().max().item(), 5),
            }
    # peaks measured after the timing: a peak taken while another process ran would inflate the MFU
    peaks = measure_peaks(precisions, device, repeats=repeats)
    for name, (precision, _) in variants.items():
        results[name].update(mfu_report(flops / best[name], precision, peaks))
    report = {
        "benchmark": "backbone_forward",
        "machine": machine_header(device, peaks),
        "arch": f"{args.arch}_patch{args.patch_size}",
        "input_shape": list(x.shape),
        "quick": args.quick,
        "precisions": precisions,
        "model_gflops_per_batch": round(flops / 1e9, 3),
        "variants": results,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    fp32 = results.get("fp32", {}).get("seconds_per_batch")
    others = {k: v["seconds_per_batch"] for k, v in results.items() if not k.startswith("fp32")}
    if fp32 and others:
        report["speedup_over_fp32"] = {k: round(fp32 / v, 3) for k, v in others.items()}
    print(json.dumps(report))
    return report


def _under(device: torch.device, precision: str, fn: Callable[[], object]) -> object:
    with autocast(device, precision):
        return fn()


if __name__ == "__main__":
    main()
