"""``benchmarks/train_step.py``: the reference-style step computes the library's loss, and the report is complete."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from dino_lib.losses import DINOLoss


def _load(repo_root: Path):
    spec = importlib.util.spec_from_file_location("bench_train_step", repo_root / "benchmarks" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_loss_equals_the_library_loss(repo_root: Path) -> None:
    bench = _load(repo_root)
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4 * 3, 50, generator=gen), torch.randn(2 * 3, 50, generator=gen)
    lib = DINOLoss(50, 4, bench.TEACHER_TEMP, bench.TEACHER_TEMP, 0, 1)
    lib.center.normal_(generator=gen)
    center = lib.center.clone()
    expected = lib(student, teacher, 0)
    got = bench.reference_loss(student, teacher, center, 4)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(center, lib.center)  # same centre update


def test_train_step_benchmark_reports_the_ratio(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load(repo_root)
    argv = ["--arch", "vit_tiny", "--batch", "1", "--global-size", "32", "--local-size", "16", "--local-crops", "2"]
    argv += ["--out-dim", "256", "--steps", "1", "--warmup", "0", "--head-repeats", "1", "--precision", "fp32"]
    report = bench.main(argv)
    assert json.loads(capsys.readouterr().out) == report
    assert set(report["results"]) == {"fp32", "reference_fp32"}
    assert report["machine"]["cpu_model"] and report["machine"]["threads"] >= 1
    for result in report["results"].values():
        assert result["seconds_per_step"] > 0 and result["mfu"] > 0 and result["head_and_loss_seconds"] > 0
    ratio = report["results"]["reference_fp32"]["seconds_per_step"] / report["results"]["fp32"]["seconds_per_step"]
    if report["precision_auto"] == "fp32":
        assert report["speedup_auto_over_reference"] == round(ratio, 3)
        assert report["target"]["speedup"] == 1.3 and report["target"]["met"] == (ratio >= 1.3)
