"""``augmentation: batched``: the crops are made per batch in the loop; a run trains, is reproducible, resumes
exactly and splits into micro-batches; bad settings fail when the config is loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dino_lib.config import ConfigError
from dino_lib.data.batch_augment import BatchedMultiCrop
from dino_lib.data.crop_params import MultiCropParams
from dino_lib.train import train
from dino_lib.train.tasks import build_image_task
from dino_lib.utils.io import safe_torch_load

DIGITS = {"data_path": "sample:digits/train", "max_images": 8, "augmentation": "batched", "epochs": 1}


def _state(run_dir: Path) -> dict:
    return safe_torch_load(run_dir / "checkpoint.pth")


def _assert_equal_states(a: dict, b: dict) -> None:
    for part in ("student", "teacher", "dino_loss"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part} {key}"


def test_the_task_returns_bases_and_parameters(tiny_cfg):
    task = build_image_task(tiny_cfg(**DIGITS, batched_base_size=40))
    assert isinstance(task.device_transform, BatchedMultiCrop)
    (base, params), _ = task.dataset[0]
    assert base.dtype == torch.uint8 and base.shape == (3, 40, 40) and params["box"].shape == (4, 4)
    assert isinstance(task.dataset.dataset.transform, MultiCropParams)  # type: ignore[attr-defined]
    assert build_image_task(tiny_cfg(data_path="sample:digits/train", max_images=8)).device_transform is None


def test_a_batched_run_trains_and_is_reproducible(tiny_cfg, tmp_path):
    a = tiny_cfg(**DIGITS, output_dir=str(tmp_path / "a"))
    result = train(a)
    assert result.last_epoch is not None and result.last_epoch["iterations"] == 2
    assert torch.isfinite(torch.tensor(result.last_epoch["train_loss"]))
    train(tiny_cfg(**DIGITS, output_dir=str(tmp_path / "b")))
    first, second = _state(tmp_path / "a"), _state(tmp_path / "b")
    _assert_equal_states(first, second)
    assert first["dino_loss"]["center"].abs().sum() > 0  # it trained
    other = _state(Path(train(tiny_cfg(**DIGITS, seed=1, output_dir=str(tmp_path / "c"))).run_dir))
    assert not torch.equal(first["dino_loss"]["center"], other["dino_loss"]["center"])


def test_a_batched_run_resumes_exactly(tiny_cfg, tmp_path):
    """Two epochs straight against epoch 1 restored from its checkpoint, then epoch 2."""
    over = dict(DIGITS, epochs=2, saveckp_freq=1)
    straight = tiny_cfg(**over, output_dir=str(tmp_path / "straight"))
    train(straight)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(tmp_path / "straight" / "checkpoint0000.pth", resumed / "checkpoint.pth")  # after epoch 1
    train(tiny_cfg(**over, output_dir=str(resumed)))
    _assert_equal_states(_state(tmp_path / "straight"), _state(resumed))


def test_micro_batches_make_the_same_crops(tiny_cfg, tmp_path):
    """The device transform runs per micro-batch: SGD updates of 2 x 2 micro-batches equal those of batches of 4."""
    over = dict(DIGITS, optimizer="sgd", lr=0.5, drop_path_rate=0.0, freeze_last_layer=0, warmup_epochs=0)
    train(tiny_cfg(**over, output_dir=str(tmp_path / "whole")))
    train(tiny_cfg(**over, accumulate_steps=2, output_dir=str(tmp_path / "micro")))
    whole, micro = _state(tmp_path / "whole"), _state(tmp_path / "micro")
    for key, value in whole["student"].items():
        torch.testing.assert_close(value, micro["student"][key], rtol=0, atol=1e-5, msg=key)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"augmentation": "gpu"}, r"augmentation.*gpu"),
        ({"augmentation": "batched", "batched_base_size": 24}, r"batched_base_size \(24\) must be >= the largest"),
        (
            {"augmentation": "batched", "global_crops_size": 16, "local_crops_size": 24},
            r"batched_base_size \(16 = global_crops_size\) must be >= the largest crop size \(24\)",
        ),
        ({"augmentation": "batched", "task": "regions"}, r"works with task: images only"),
        ({"augmentation": "batched", "batched_base_size": 4}, r"batched_base_size"),
    ],
)
def test_bad_settings_fail_early(tiny_cfg, over, message):
    with pytest.raises(ConfigError, match=message):
        tiny_cfg(**over)


def test_pil_ignores_the_base_size(tiny_cfg):
    cfg = tiny_cfg(batched_base_size=24)  # switching back to pil needs no other change
    assert cfg.augmentation == "pil" and build_image_task(cfg).device_transform is None
