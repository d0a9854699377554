"""The two anti-collapse options of the trainer (Sinkhorn-Knopp teacher targets, the KoLeo term) reach the loss
and the log, under plain batches and under gradient accumulation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from dino_lib.train import train
from dino_lib.train.monitors import read_log
from dino_lib.utils.io import safe_torch_load

EXACT = {"drop_path_rate": 0.0, "freeze_last_layer": 0, "warmup_epochs": 0, "epochs": 1, "precision": "fp32"}


def _run(tiny_cfg, tmp_path: Path, name: str, **over) -> tuple[dict, list[dict]]:
    cfg = tiny_cfg(output_dir=str(tmp_path / name), log_every=1, **EXACT, **over)
    train(cfg)
    return safe_torch_load(Path(cfg.output_dir) / "checkpoint.pth"), read_log(Path(cfg.output_dir) / "log.jsonl")


@pytest.mark.parametrize("accumulate_steps", [1, 2])
def test_koleo_and_sinkhorn_knopp_train_and_log(tiny_cfg, tmp_path, accumulate_steps):
    state, records = _run(
        tiny_cfg,
        tmp_path,
        f"both{accumulate_steps}",
        koleo_weight=0.1,
        teacher_centering="sinkhorn_knopp",
        accumulate_steps=accumulate_steps,
    )
    iters = [r for r in records if r.get("type") == "iter"]
    assert iters and all(math.isfinite(r["koleo_loss"]) and math.isfinite(r["loss"]) for r in iters)
    epoch = next(r for r in records if r.get("type") == "epoch")
    assert math.isfinite(epoch["koleo_loss"])
    assert state["dino_loss"]["center"].abs().sum() == 0  # Sinkhorn-Knopp keeps no running center


def test_koleo_term_changes_the_update(tiny_cfg, tmp_path):
    """Same seed and crops: with the KoLeo term on, the student's backbone ends elsewhere; the logged loss is still
    the DINO loss of the first iteration (the term is logged apart)."""
    plain, plain_log = _run(tiny_cfg, tmp_path, "plain", optimizer="sgd", lr=0.5)
    koleo, koleo_log = _run(tiny_cfg, tmp_path, "koleo", optimizer="sgd", lr=0.5, koleo_weight=1.0)
    key = "module.backbone.blocks.0.attn.qkv.weight"
    assert (plain["student"][key] - koleo["student"][key]).abs().max() > 1e-6
    first = lambda log: next(r for r in log if r.get("type") == "iter")  # noqa: E731
    assert first(plain_log)["loss"] == pytest.approx(first(koleo_log)["loss"], rel=1e-5)
    assert "koleo_loss" in first(koleo_log) and "koleo_loss" not in first(plain_log)
    assert torch.isfinite(koleo["student"][key]).all()
