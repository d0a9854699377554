"""Pretraining k-NN monitor, the ``python -m dino_lib.eval`` twin and the parameter files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dino_lib.config import load_config
from dino_lib.eval import knn_monitor
from dino_lib.eval.__main__ import main as eval_main
from dino_lib.eval.config import EvalConfig
from dino_lib.models import build_backbone

REPO = Path(__file__).resolve().parents[2]


def test_knn_monitor_returns_percentages_and_restores_mode(labelled_folder: Path):
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=2).train()
    stats = knn_monitor(model, labelled_folder, k=20, resize=64, crop=56, batch_size=16)
    assert set(stats) == {"knn_top1", "knn_top5"}
    assert 0.0 <= stats["knn_top1"] <= stats["knn_top5"] <= 100.0
    assert stats["knn_top1"] > 100 / 3  # three very different photos: better than chance even with random weights
    assert model.training  # the training loop's mode is restored


def test_eval_cli_knn_and_cached_linear(labelled_folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = eval_main(
        [
            f"data_path={labelled_folder}",
            f"output_dir={out}",
            "arch=vit_tiny",
            "depth=2",
            "resize=64",
            "crop=56",
            "num_workers=0",
            "device=cpu",
            "nb_knn=[5,20]",
            "epochs=3",
            "lr=0.5",
            "batch_size_per_gpu=16",
            "linear_mode=cached",
            "n_last_blocks=2",
            "avgpool_patchtokens=true",
            f"cache_dir={tmp_path / 'cache'}",
        ]
    )
    assert set(summary["knn"]) == {5, 20}
    assert summary["linear"]["feature_dim"] == 3 * 192
    knn = json.loads((out / "knn_results.json").read_text())
    assert knn["knn"]["20"]["top1"] == pytest.approx(summary["knn"][20]["top1"])
    assert (out / "linear_results.json").is_file() and (out / "linear" / "checkpoint.pth.tar").is_file()
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 4  # train/val for k-NN and for the cached linear probe


def test_parameter_files_load():
    ci = load_config(EvalConfig, REPO / "params" / "evaluate" / "ci.yaml")
    assert ci.arch == "vit_tiny" and ci.data_path == "sample:labelled"
    ref = load_config(EvalConfig, REPO / "params" / "evaluate" / "imagenet_vit_small.yaml")
    assert (ref.arch, ref.patch_size, ref.n_last_blocks, ref.avgpool_patchtokens) == ("vit_small", 16, 4, False)
    assert (ref.nb_knn, ref.temperature, ref.epochs, ref.lr) == ([10, 20, 100, 200], 0.07, 100, 0.001)
    assert (ref.resize, ref.crop, ref.batch_size_per_gpu, ref.linear_mode) == (256, 224, 128, "augmented")
