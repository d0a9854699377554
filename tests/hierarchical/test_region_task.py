"""The region task through the training registry: config validation and bad inputs before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dino_lib.config import ConfigError, from_dict
from dino_lib.hierarchical.dataset import RegionDataError
from dino_lib.hierarchical.manifest import write_manifest
from dino_lib.train.config import TrainConfig
from dino_lib.train.tasks import build_task

REGION = {"depth": 1, "embed_dim": 16, "num_heads": 2}


def _features(tmp_path: Path, n: int, g: int = 4, dim: int = 24) -> Path:
    rows = []
    for i in range(n):
        torch.save({"features": torch.randn(g * g, dim).half()}, tmp_path / f"s{i % 2}_{i}_0.pt")
        rows.append({"region_id": f"s{i % 2}_{i}_0", "slide_id": f"s{i % 2}", "x": i, "y": 0, "g": g, "D": dim,
                     "feature_path": f"s{i % 2}_{i}_0.pt", "stack_index": -1})  # fmt: skip
    write_manifest(rows, tmp_path / "manifest.csv")
    return tmp_path


def _cfg(data: Path, **kw) -> TrainConfig:
    base = {"task": "regions", "data_path": str(data), "batch_size_per_gpu": 2, "local_crops_number": 3,
            "region": {**REGION, "global_crop_size": 3, "local_crop_size": 2}}  # fmt: skip
    base.update(kw)
    return from_dict(TrainConfig, base)


def test_region_task_builds_from_the_manifest(tmp_path: Path) -> None:
    task = build_task(_cfg(_features(tmp_path, 4)))
    crops, index = task.dataset[1]
    assert index == 1 and [tuple(c.shape) for c in crops] == [(24, 3, 3)] * 2 + [(24, 2, 2)] * 3
    assert (task.n_global_crops, task.n_local_crops, task.embed_dim) == (2, 3, 16)
    assert task.student_backbone.input_dim == 24 and task.student_backbone.pos_grid == 3
    assert task.student_backbone(crops[0][None]).shape == (1, 16)
    assert task.teacher_backbone.blocks[0].drop_path1.__class__.__name__ == "Identity"


def test_reference_crops_derive_from_g(tmp_path: Path) -> None:
    task = build_task(_cfg(_features(tmp_path, 2, g=8), region=dict(REGION)))
    crops, _ = task.dataset[0]
    assert crops[0].shape[-1] == 7 and crops[-1].shape[-1] == 3  # int(0.875 * 8), int(0.375 * 8)


@pytest.mark.parametrize(
    "region,message",
    [
        ({"global_crop_size": 14, "local_crop_size": 6}, "global crop 14x14 tokens is larger than the region grid 4x4"),
        ({"global_crop_size": 3, "local_crop_size": 3}, "local crop 3x3 must satisfy"),
        ({"global_crops_size": 3}, "did you mean 'region.global_crop_size'"),
        ({"g": 8}, "column g holds \\[4\\] but the configuration expects 8"),
        ({"input_dim": 384}, "column D holds \\[24\\]"),
    ],
)
def test_bad_region_config_fails_before_training(tmp_path: Path, region: dict, message: str) -> None:
    with pytest.raises((ConfigError, RegionDataError), match=message):
        build_task(_cfg(_features(tmp_path, 4), region={**REGION, **region}))


def test_too_few_regions_for_one_batch(tmp_path: Path) -> None:
    with pytest.raises(RegionDataError, match="3 regions but a global batch of 4"):
        build_task(_cfg(_features(tmp_path, 3), batch_size_per_gpu=4))


def test_missing_data_and_legacy_folder_without_g(tmp_path: Path) -> None:
    with pytest.raises(RegionDataError, match="region data not found"):
        build_task(_cfg(tmp_path / "nowhere", region={**REGION, "g": 4}))
    (tmp_path / "legacy").mkdir()
    torch.save(torch.randn(16, 24), tmp_path / "legacy" / "a_0_0.pt")
    with pytest.raises(ConfigError, match="region.g is needed"):
        build_task(_cfg(tmp_path / "legacy", region=dict(REGION)))
    task = build_task(
        _cfg(
            tmp_path / "legacy",
            batch_size_per_gpu=1,
            region={**REGION, "g": 4, "input_dim": 24, "global_crop_size": 3, "local_crop_size": 1},
        )
    )
    assert len(task.dataset) == 1


def test_extract_if_missing_extracts_a_missing_data_path_first(tmp_path: Path, region_folder: Path) -> None:
    extraction = {"data_path": str(region_folder), "tile_size": 64, "input_size": 32, "device": "cpu",
                  "precision": "fp32", "fallback_encoder": {"depth": 1, "embed_dim": 32, "num_heads": 2}}  # fmt: skip
    region = {**REGION, "global_crop_size": 3, "local_crop_size": 2, "extract_if_missing": extraction}
    task = build_task(_cfg(tmp_path / "features", region=region))
    assert (tmp_path / "features" / "manifest.csv").is_file() and len(task.dataset) == 4
    assert task.dataset[0][0][0].shape == (32, 3, 3)  # D = 32 from the extracted manifest
    (tmp_path / "typo").mkdir()  # an existing folder without a manifest is never filled
    with pytest.raises(FileNotFoundError, match="no region manifest"):
        build_task(_cfg(tmp_path / "typo", region=region))


def test_synthetic_region_dino_writes_and_resumes(tmp_path: Path) -> None:
    """Random [g*g, D] tensors (g = 8), a 2-block region ViT, K = 256; stop after 1 epoch, resume to 2."""
    import json

    from dino_lib.train.loop import train

    (tmp_path / "data").mkdir()
    data = _features(tmp_path / "data", 8, g=8, dim=24)
    base = {"out_dim": 256, "head_hidden_dim": 32, "head_bottleneck_dim": 16, "precision": "fp32", "num_workers": 0,
            "device": "cpu", "warmup_epochs": 0, "output_dir": str(tmp_path / "run"), "batch_size_per_gpu": 4,
            "local_crops_number": 2, "region": {"depth": 2, "embed_dim": 16, "num_heads": 2}}  # fmt: skip
    first = train(_cfg(data, epochs=1, **base))
    assert first.epochs_done == 1 and first.checkpoint.is_file()
    ckpt = torch.load(first.checkpoint, weights_only=False)
    assert any(k.endswith("phi.0.weight") for k in ckpt["teacher"])
    resumed = train(_cfg(data, epochs=2, **base))
    assert resumed.epochs_done == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r.get("type") == "epoch"] == [0, 1]  # epoch 0 is not repeated
