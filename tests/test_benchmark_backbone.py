"""Smoke test of ``benchmarks/backbone.py``: one JSON object with the machine header and every variant."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dino_lib.runtime.perf import NO_NATIVE_FRACTION


def test_backbone_benchmark_prints_one_json_object(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_backbone", repo_root / "benchmarks" / "backbone.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--quick", "--arch", "vit_tiny", "--image-size", "64", "--repeats", "1", "--precision", "fp32,bf16"]
    report = module.main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert printed == report
    assert report["input_shape"] == [2, 3, 64, 64]
    assert report["machine"]["precision_auto"] in ("fp32", "bf16")
    assert {"cpu_model", "cpu_flags", "threads", "native_bf16"} <= set(report["machine"])
    assert set(report["variants"]) == {
        "fp32",
        "fp32_channels_last",
        "bf16_autocast",
        "bf16_weights",
        "bf16_autocast_channels_last",
    }
    peaks = report["machine"]["matmul_peak_gflops"]
    emulated = peaks["bf16"] < NO_NATIVE_FRACTION * peaks["fp32"]
    for name, result in report["variants"].items():
        assert result["images_per_s"] > 0 and result["max_abs_diff_vs_fp32"] < 0.5
        if name.startswith("bf16") and emulated:
            assert result["mfu"] is None and result["note"].startswith("no native bf16 support")
        else:
            assert result["mfu"] > 0 and "note" not in result
    assert report["variants"]["fp32"]["max_abs_diff_vs_fp32"] == 0.0
    assert report["speedup_over_fp32"]["bf16_autocast"] > 0 and report["peak_rss_mb"] > 0
