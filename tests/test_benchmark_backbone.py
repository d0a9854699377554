"""Smoke test of ``benchmarks/backbone.py``: one JSON object with every variant (tiny settings)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def test_backbone_benchmark_prints_one_json_object(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_backbone", repo_root / "benchmarks" / "backbone.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--quick", "--arch", "vit_tiny", "--image-size", "64", "--repeats", "1"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == report
    assert report["input_shape"] == [2, 3, 64, 64]
    assert set(report["variants"]) == {"fp32", "bf16_autocast", "bf16_weights", "bf16_autocast_channels_last"}
    for result in report["variants"].values():
        assert result["images_per_s"] > 0 and 0 < result["mfu"] and result["max_abs_diff_vs_fp32"] < 0.5
    assert report["variants"]["fp32"]["max_abs_diff_vs_fp32"] == 0.0
    assert report["bf16_autocast_speedup"] > 0 and report["peak_rss_mb"] > 0
