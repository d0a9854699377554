"""TensorBoard output of a training run: scalars for every logged quantity and an attention image per k-NN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dino_lib.launch import default_callbacks
from dino_lib.train import train


def _events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_tensorboard_scalars_and_attention_image(tiny_cfg):
    cfg = tiny_cfg(
        epochs=1,
        warmup_epochs=0,
        tensorboard=True,
        knn_every=1,
        knn_data_path="sample:labelled",
        knn_resize=40,
        knn_crop=32,
    )
    train(cfg, callbacks=default_callbacks(cfg))
    acc = _events(Path(cfg.output_dir) / "tb")
    tags = set(acc.Tags()["scalars"])
    for tag in ("loss", "lr", "wd", "momentum", "teacher_temp", "teacher_entropy"):
        assert f"train/{tag}" in tags, tag
    assert {"speed/images_per_s", "epoch/loss", "knn/teacher_top1", "knn/student_top1"} <= tags
    losses = acc.Scalars("train/loss")
    assert [e.step for e in losses] == [0, 1, 2] and all(np.isfinite(e.value) for e in losses)
    (image,) = acc.Images("attention/teacher")
    assert image.step == 0 and image.width == 32 * (1 + 2) and image.height == 32  # picture + 2 heads


def test_missing_tensorboard_package_fails_before_training(tiny_cfg, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    cfg = tiny_cfg(tensorboard=True)
    with pytest.raises(ImportError, match=r"pip install 'dino-workbench\[tensorboard\]'"):
        train(cfg)
    assert not (Path(cfg.output_dir) / "checkpoint.pth").exists()
