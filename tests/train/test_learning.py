"""Learning checks: short CPU pretraining runs raise the k-NN accuracy of the teacher above that of the same
backbone at initialisation.

* the sample photos (8 photos -> 8 classes of crops): the labelled task is small (32 validation crops), so the
  score is the mean top-1 over k in {1, 5, 10, 20}; it must rise;
* the small-data recipe as shipped on scikit-learn's digits (5 epochs on the 1352 training scans, 445 held out): the
  weighted 20-NN top-1 must rise by a stated margin.

Runs are seeded and fp32, hence deterministic for a given thread count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dino_lib.config import load_config
from dino_lib.launch import default_callbacks
from dino_lib.models import build_backbone
from dino_lib.train import TrainConfig, train

pytestmark = pytest.mark.slow
ARCH_KWARGS = {"depth": 4, "embed_dim": 96, "num_heads": 3}


def _mean_knn(backbone) -> float:
    from dino_lib.eval.monitor import knn_monitor

    scores = [knn_monitor(backbone, "sample:labelled", k=k, resize=72, crop=64)["knn_top1"] for k in (1, 5, 10, 20)]
    return sum(scores) / len(scores)


def test_pretraining_improves_knn(tiny_cfg):
    cfg = tiny_cfg(
        arch_kwargs=ARCH_KWARGS,
        out_dim=1024,
        head_hidden_dim=256,
        head_bottleneck_dim=64,
        epochs=12,
        warmup_epochs=2,
        batch_size_per_gpu=8,
        lr=0.02,
        max_images=None,
        global_crops_size=64,
        local_crops_size=32,
        local_crops_number=4,
        momentum_teacher=0.99,
        drop_path_rate=0.0,
        log_every=50,
        saveckp_freq=0,
        knn_every=12,
        knn_data_path="sample:labelled",
        knn_resize=72,
        knn_crop=64,
    )
    torch.manual_seed(cfg.seed)  # the initial weights the trainer builds (it seeds before building the student)
    init = build_backbone("vit_tiny", drop_path_rate=0.0, **ARCH_KWARGS)
    before = _mean_knn(init)
    res = train(cfg, callbacks=default_callbacks(cfg))
    assert {"knn_teacher_top1", "knn_student_top1"} <= set(res.last_epoch)  # the in-loop monitor ran
    trained = build_backbone("vit_tiny", **ARCH_KWARGS)
    trained.load_state_dict(torch.load(res.teacher_export, weights_only=True))
    after = _mean_knn(trained)
    print(f"mean k-NN top-1 over k=1,5,10,20: init {before:.1f} % -> trained {after:.1f} %")
    assert after > before


SMALL_DATA = Path(__file__).resolve().parents[2] / "params" / "pretrain" / "small_data.yaml"
#: Points of weighted 20-NN top-1 (digits, held-out split) the short run must add to its initialisation. Measured
#: with seed 0 in fp32 on an idle 2-core AMD EPYC (AVX-512): 68.3 % -> 90.6 % (+22.3) in 82 s (8 epochs); the margin
#: leaves room for other thread counts and CPUs.
MIN_GAIN_POINTS = 15.0


def test_small_data_recipe_learns_digits(tmp_path):
    """The small-data recipe, as shipped, on scikit-learn's digits: a few epochs lift the teacher's k-NN by a margin,
    the loss leaves ln K, and no collapse warning fires."""
    epochs = 8
    cfg = load_config(
        TrainConfig,
        SMALL_DATA,
        {
            "output_dir": str(tmp_path / "run"),
            "precision": "fp32",
            "device": "cpu",
            "epochs": epochs,
            "max_images": None,
            "knn_every": epochs,
            "log_every": 5,
        },
    )
    records = []
    res = train(cfg, callback=records.append, callbacks=default_callbacks(cfg))
    init = next(r for r in records if r.get("event") == "knn_init")["knn_teacher_top1"]
    after = res.last_epoch["knn_teacher_top1"]
    losses = [r["loss"] for r in records if r.get("type") == "iter"]
    print(f"small-data recipe, {epochs} epochs on the training digits: 20-NN top-1 {init:.1f} % -> {after:.1f} %")
    assert after >= init + MIN_GAIN_POINTS
    assert min(losses) < 0.9 * cfg.ln_k  # the loss left ln K
    assert not [r for r in records if r.get("event") == "warning"]
