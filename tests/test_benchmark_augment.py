"""Smoke test of ``benchmarks/augment.py``: one JSON object with the machine header and both pipelines timed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def test_augment_benchmark_prints_one_json_object(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_augment", repo_root / "benchmarks" / "augment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--quick"])
    assert json.loads(capsys.readouterr().out) == report
    assert {"cpu_model", "cpu_flags", "threads"} <= set(report["machine"])
    digits = report["cases"]["digits"]
    assert digits["crops"] == "2 x 32 + 4 x 16" and digits["batch"] == 8
    assert digits["pil"]["images_per_s"] > 0 and digits["batched"]["images_per_s"] > 0
    assert digits["batched"]["seconds_per_batch"] == pytest.approx(
        digits["batched"]["dataset_s"] + digits["batched"]["apply_s"], abs=2e-4
    )
