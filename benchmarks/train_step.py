"""Benchmark one full DINO training step: the library's ``precision: auto`` step against a reference-style fp32 step.

Step = teacher forward (2 global crops) + student forward (all crops) + DINO head and loss + backward +
per-parameter clipping + AdamW step + EMA update, i.e. what ``dino_lib.train`` does per iteration. Variants, timed
round-robin in one process (best of ``--steps`` after ``--warmup``), so load from other processes hits them alike:

* the library step in the precision ``auto`` resolves to (plus fp32 where that is bf16, or the precisions asked
  for with ``--precision``), keyed by precision: the trainer's own pieces under
  :func:`dino_lib.runtime.autocast` (fused SDPA attention, the one-contraction DINO loss, fused AdamW, foreach
  clipping and EMA);
* ``reference_fp32``: the reference implementation's way, written out here: no autocast, explicit attention
  ``softmax(q k^T) v`` in every block, the DINO loss as a loop over (teacher, student) crop pairs, AdamW with
  ``foreach=False`` (one parameter at a time), per-parameter clipping and EMA loops.

The JSON holds the machine header (:func:`dino_lib.runtime.perf.machine_header`), per variant seconds per step and
MFU against the matmul peak of the precision used (or "no native support"), the time of the DINO head + loss
(forward and backward) alone, and ``speedup_auto_over_reference`` with its target: 1.3 on a CPU without native
bf16 (``auto`` is fp32 there), 3 where ``auto`` is bf16. Model FLOPs count matmuls only (multiply-add = 2): the
student's forward + backward = 3 x its forward FLOPs, the teacher's forward once.

    python benchmarks/train_step.py            # vit_small, batch 4, 2 x 224 + 8 x 96 crops, K = 65536
    python benchmarks/train_step.py --quick    # vit_tiny, batch 2, 1 timed step
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from dino_lib.losses import DINOLoss
from dino_lib.models import DINOHead, MultiCropWrapper, build_backbone
from dino_lib.runtime import autocast, resolve_device, resolve_precision
from dino_lib.runtime.perf import (
    benchmark_precisions,
    machine_header,
    measure_peaks,
    mfu_report,
    peak_rss_mb,
    vit_forward_flops,
)
from dino_lib.train.ema import EMA
from dino_lib.train.grad import clip_gradients
from dino_lib.train.optim import build_optimizer, get_params_groups

STUDENT_TEMP, TEACHER_TEMP, CENTER_MOMENTUM, CLIP, EMA_MOMENTUM = 0.1, 0.04, 0.9, 3.0, 0.996


def head_flops(in_dim: int, hidden: int, bottleneck: int, out_dim: int) -> int:
    return 2 * (in_dim * hidden + hidden * hidden + hidden * bottleneck + bottleneck * out_dim)


def reference_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, center: torch.Tensor, ncrops: int):
    """The reference DINO loss: a Python loop over (teacher, student) crop pairs, then the centre update."""
    student = (student_out / STUDENT_TEMP).chunk(ncrops)
    teacher = F.softmax((teacher_out - center) / TEACHER_TEMP, dim=-1).detach().chunk(2)
    total, pairs = 0.0, 0
    for iq, q in enumerate(teacher):
        for v in range(ncrops):
            if v == iq:
                continue
            total = total + torch.sum(-q * F.log_softmax(student[v], dim=-1), dim=-1).mean()
            pairs += 1
    with torch.no_grad():
        batch_center = torch.sum(teacher_out, dim=0, keepdim=True) / len(teacher_out)
        center.mul_(CENTER_MOMENTUM).add_(batch_center * (1 - CENTER_MOMENTUM))
    return total / pairs


@torch.no_grad()
def reference_clip(model: nn.Module, clip: float) -> None:
    """The reference's per-parameter clipping: one norm and one scale per tensor."""
    for p in model.parameters():
        if p.grad is not None:
            coef = clip / (p.grad.norm(2) + 1e-6)
            if coef < 1:
                p.grad.mul_(coef)


@torch.no_grad()
def reference_ema(student: nn.Module, teacher: nn.Module, m: float) -> None:
    for ps, pt in zip(student.parameters(), teacher.parameters()):
        pt.mul_(m).add_((1 - m) * ps.detach())


class Variant:
    """A student/teacher pair with its optimiser and one ``step`` closure."""

    def __init__(self, precision: str, reference: bool, args: argparse.Namespace, init: dict) -> None:
        self.precision, self.reference = precision, reference
        self.device = args.device
        self.ncrops = 2 + args.local_crops
        self.student = MultiCropWrapper(
            build_backbone(args.arch, drop_path_rate=0.1), DINOHead(args.embed_dim, args.out_dim)
        )
        self.teacher = MultiCropWrapper(build_backbone(args.arch), DINOHead(args.embed_dim, args.out_dim))
        self.student.load_state_dict(init)
        self.teacher.load_state_dict(init)
        self.student.to(self.device)
        self.teacher.to(self.device)
        for p in self.teacher.parameters():
            p.requires_grad = False
        if reference:
            for net in (self.student, self.teacher):
                for blk in net.backbone.blocks:
                    blk.attn.fused_attn = False  # explicit softmax(q k^T) v, as the reference ViT
            self.optimizer = torch.optim.AdamW(get_params_groups(self.student), foreach=False)
            self.center = torch.zeros(1, args.out_dim, device=self.device)
        else:
            self.optimizer = build_optimizer("adamw", get_params_groups(self.student))
            self.loss = DINOLoss(args.out_dim, self.ncrops, TEACHER_TEMP, TEACHER_TEMP, 0, 1).to(self.device)
            self.ema = EMA(self.student, self.teacher)
        for group in self.optimizer.param_groups:
            group["lr"] = 1e-4

    def context(self):
        return autocast(self.device, self.precision)

    def dino_loss(self, student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return reference_loss(student_out.float(), teacher_out.float(), self.center, self.ncrops)
        return self.loss(student_out, teacher_out, 0)

    def step(self, crops: list[torch.Tensor]) -> None:
        with self.context():
            with torch.no_grad():
                teacher_out = self.teacher(crops[:2])
            student_out = self.student(crops)
        loss = self.dino_loss(student_out, teacher_out)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.reference:
            reference_clip(self.student, CLIP)
            self.optimizer.step()
            reference_ema(self.student, self.teacher, EMA_MOMENTUM)
        else:
            clip_gradients(self.student, CLIP)
            self.optimizer.step()
            self.ema.update(EMA_MOMENTUM)

    def head_and_loss(self, feats: torch.Tensor, teacher_feats: torch.Tensor) -> None:
        """Student and teacher heads on given backbone features, the loss and the backward through the head."""
        with self.context():
            with torch.no_grad():
                teacher_out = self.teacher.head(teacher_feats)
            student_out = self.student.head(feats)
        self.student.zero_grad(set_to_none=True)
        self.dino_loss(student_out, teacher_out).backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _round_robin(fns: dict[str, Callable[[], None]], warmup: int, repeats: int, device: torch.device) -> dict:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="vit_tiny, batch 2, 1 timed step")
    p.add_argument("--arch", default="vit_small")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--out-dim", type=int, default=65536)
    p.add_argument("--global-size", type=int, default=224)
    p.add_argument("--local-size", type=int, default=96)
    p.add_argument("--local-crops", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant (best kept)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--head-repeats", type=int, default=3, help="timed head + loss passes per variant")
    p.add_argument("--device", default="cpu", help="auto|cpu|cuda|cuda:N")
    p.add_argument("--precision", default=None, help="library precisions to time, e.g. fp32,bf16 (default: auto)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference-style fp32 step")
    args = p.parse_args(argv)
    if args.quick:
        args.arch, args.batch, args.steps = "vit_tiny", 2, 1
    args.device = resolve_device(args.device)
    precisions = benchmark_precisions(args.precision, args.device)

    torch.manual_seed(0)
    probe = build_backbone(args.arch)
    args.embed_dim = probe.embed_dim
    init = MultiCropWrapper(build_backbone(args.arch, drop_path_rate=0.1), DINOHead(args.embed_dim, args.out_dim))
    init = copy.deepcopy(init.state_dict())
    variants = {pr: Variant(pr, False, args, init) for pr in precisions}
    if not args.no_reference:
        variants["reference_fp32"] = Variant("fp32", True, args, init)
    b, dev = args.batch, args.device
    gen = torch.Generator().manual_seed(0)
    crops = [torch.randn(b, 3, args.global_size, args.global_size, generator=gen) for _ in range(2)]
    crops += [torch.randn(b, 3, args.local_size, args.local_size, generator=gen) for _ in range(args.local_crops)]
    crops = [c.to(dev) for c in crops]
    ncrops = 2 + args.local_crops
    feats = torch.randn(ncrops * b, args.embed_dim, generator=gen).to(dev)

    steps = _round_robin({k: (lambda v=v: v.step(crops)) for k, v in variants.items()}, args.warmup, args.steps, dev)
    heads = _round_robin(
        {k: (lambda v=v: v.head_and_loss(feats, feats[: 2 * b])) for k, v in variants.items()},
        1,
        args.head_repeats,
        dev,
    )

    g_fwd = vit_forward_flops(probe, (args.global_size, args.global_size), batch=2 * b)
    l_fwd = vit_forward_flops(probe, (args.local_size, args.local_size), batch=args.local_crops * b)
    h = head_flops(args.embed_dim, 2048, 256, args.out_dim)
    flops = 3 * (g_fwd + l_fwd + ncrops * b * h) + g_fwd + 2 * b * h
    head_flops_total = 3 * ncrops * b * h + 2 * b * h
    peaks = measure_peaks([v.precision for v in variants.values()], dev)
    results = {}
    for name, v in variants.items():
        sec, head_sec = min(steps[name]), min(heads[name])
        results[name] = {
            "seconds_per_step": round(sec, 3),
            "seconds_per_step_all": [round(t, 3) for t in steps[name]],
            "images_per_s": round(b / sec, 3),
            **mfu_report(flops / sec, v.precision, peaks),
            "head_and_loss_seconds": round(head_sec, 4),
            "head_and_loss": mfu_report(head_flops_total / head_sec, v.precision, peaks),
        }
    auto_precision = resolve_precision("auto", dev)
    target = 1.3 if auto_precision == "fp32" else 3.0
    report: dict = {
        "benchmark": "dino_train_step",
        "machine": machine_header(dev, peaks),
        "arch": args.arch,
        "batch": b,
        "crops": f"2x{args.global_size} + {args.local_crops}x{args.local_size}",
        "out_dim": args.out_dim,
        "quick": args.quick,
        "precision_auto": auto_precision,
        "model_gflops_per_step": round(flops / 1e9, 2),
        "results": results,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if "reference_fp32" in results and auto_precision in results:
        speedup = results["reference_fp32"]["seconds_per_step"] / results[auto_precision]["seconds_per_step"]
        report["speedup_auto_over_reference"] = round(speedup, 3)
        report["target"] = {"speedup": target, "auto_precision": auto_precision, "met": speedup >= target}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
