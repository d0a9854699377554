"""Benchmark one full DINO training step on the CPU, in fp32 and bf16 autocast; prints one JSON object.

Step = teacher forward (2 global crops) + student forward (all crops) + DINO loss + backward + per-parameter
clipping + AdamW step + EMA update, i.e. what ``dino_lib.train`` does per iteration. Default shapes: vit_small/16,
batch 8, 2 x 224 + 8 x 96 crops, out_dim 65536. Model FLOPs count matmuls only (multiply-add = 2): the student's
forward + backward = 3 x its forward FLOPs, the teacher's forward once; MFU divides by the measured peak of a large
square matmul of the same dtype (``dino_lib.utils.perf.measure_matmul_peak``). Each dtype runs in a fresh
subprocess so its peak memory (``ru_maxrss``) is its own.

    python benchmarks/train_step.py            # 3 timed steps per dtype after 1 warm-up
    python benchmarks/train_step.py --quick    # 1 timed step, smaller peak-matmul probe
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time

import torch


def head_flops(in_dim: int, hidden: int, bottleneck: int, out_dim: int) -> int:
    return 2 * (in_dim * hidden + hidden * hidden + hidden * bottleneck + bottleneck * out_dim)


def run_child(args: argparse.Namespace) -> dict:
    from dino_lib.losses import DINOLoss
    from dino_lib.models import DINOHead, MultiCropWrapper, build_backbone
    from dino_lib.train.ema import EMA
    from dino_lib.train.grad import clip_gradients
    from dino_lib.train.optim import build_optimizer, get_params_groups
    from dino_lib.utils.perf import measure_matmul_peak, peak_rss_mb, vit_forward_flops

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.child]
    torch.manual_seed(0)
    bb_s = build_backbone(args.arch, drop_path_rate=0.1)
    dim = bb_s.embed_dim
    student = MultiCropWrapper(bb_s, DINOHead(dim, args.out_dim))
    teacher = MultiCropWrapper(build_backbone(args.arch), DINOHead(dim, args.out_dim))
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    ncrops = 2 + args.local_crops
    loss_fn = DINOLoss(args.out_dim, ncrops, 0.04, 0.04, 0, 1)
    opt = build_optimizer("adamw", get_params_groups(student))  # the trainer's optimiser (fused AdamW on the CPU)
    for group in opt.param_groups:
        group["lr"] = 1e-4
    ema = EMA(student, teacher)
    b = args.batch
    crops = [torch.randn(b, 3, args.global_size, args.global_size) for _ in range(2)]
    crops += [torch.randn(b, 3, args.local_size, args.local_size) for _ in range(args.local_crops)]
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else contextlib.nullcontext()

    def step() -> None:
        with ctx:
            with torch.no_grad():
                t_out = teacher(crops[:2])
            s_out = student(crops)
        loss = loss_fn(s_out, t_out, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(student, 3.0)
        opt.step()
        ema.update(0.996)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    sec = min(times)
    g_fwd = vit_forward_flops(bb_s, (args.global_size, args.global_size), batch=2 * b)
    l_fwd = vit_forward_flops(bb_s, (args.local_size, args.local_size), batch=args.local_crops * b)
    h = head_flops(dim, 2048, 256, args.out_dim)
    student_fwd = g_fwd + l_fwd + ncrops * b * h
    teacher_fwd = g_fwd + 2 * b * h
    flops = 3 * student_fwd + teacher_fwd
    peak = measure_matmul_peak(dtype, n=1024 if args.quick else 2048)
    return {
        "dtype": args.child,
        "seconds_per_step": sec,
        "seconds_per_step_all": times,
        "images_per_s": b / sec,
        "model_tflops_per_step": flops / 1e12,
        "achieved_tflops": flops / sec / 1e12,
        "matmul_peak_tflops": peak / 1e12,
        "mfu": flops / sec / peak,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 timed step per dtype, smaller matmul-peak probe")
    p.add_argument("--arch", default="vit_small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out-dim", type=int, default=65536)
    p.add_argument("--global-size", type=int, default=224)
    p.add_argument("--local-size", type=int, default=96)
    p.add_argument("--local-crops", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.steps = 1
    if args.child:
        print(json.dumps(run_child(args)))
        return
    results = {}
    for dt in args.dtypes.split(","):
        cmd = [sys.executable, __file__, "--child", dt] + [a for a in sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[dt] = json.loads(out)
    print(
        json.dumps(
            {
                "benchmark": "dino_train_step",
                "arch": args.arch,
                "batch": args.batch,
                "crops": f"2x{args.global_size} + {args.local_crops}x{args.local_size}",
                "out_dim": args.out_dim,
                "threads": torch.get_num_threads(),
                "quick": args.quick,
                "results": results,
                "targets": {"bf16_mfu": 0.55, "fp32_mfu": 0.75},
                "bf16_speedup": results["fp32"]["seconds_per_step"] / results["bf16"]["seconds_per_step"]
                if {"fp32", "bf16"} <= set(results)
                else None,
            }
        )
    )


if __name__ == "__main__":
    main()
