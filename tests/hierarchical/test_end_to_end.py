"""Tiny end-to-end HIPT run on the sample histology set on CPU: stage 1 -> extraction -> stage 2 -> heat maps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dino_lib.config import from_dict
from dino_lib.hierarchical.composer import load_hipt
from dino_lib.hierarchical.dataset import RegionFeatureDataset
from dino_lib.hierarchical.extraction import RegionExtractionConfig, extract_regions
from dino_lib.models.region_vit import build_region_vit, load_region_vit
from dino_lib.train.config import TrainConfig
from dino_lib.train.loop import train


@pytest.mark.slow
def test_stage1_extraction_stage2(tmp_path: Path, sample_paths) -> None:
    torch.set_num_threads(1)
    common = {"precision": "fp32", "num_workers": 0, "device": "cpu", "out_dim": 128, "head_hidden_dim": 64,
              "head_bottleneck_dim": 32, "warmup_epochs": 0, "log_every": 1}  # fmt: skip
    stage1 = from_dict(TrainConfig, {
        **common, "arch": "vit_tiny", "arch_kwargs": {"depth": 2}, "data_path": "sample:histology_tiles",
        "output_dir": str(tmp_path / "stage1"), "epochs": 1, "batch_size_per_gpu": 16, "global_crops_size": 64,
        "local_crops_size": 32, "local_crops_number": 2,
    })  # fmt: skip
    teacher = train(stage1).teacher_export
    assert teacher.is_file()

    extraction = from_dict(RegionExtractionConfig, {
        "data_path": "sample:histology_regions", "output_dir": str(tmp_path / "regions"),
        "pretrained_weights": str(teacher), "tile_size": 256, "input_size": 64, "batch_size": 8,
        "precision": "fp32", "device": "cpu",
    })  # fmt: skip
    result = extract_regions(extraction)
    data = RegionFeatureDataset(result.manifest, g=4, dim=192)
    assert len(data) == 2 and torch.isfinite(data.features.float()).all()

    stage2 = from_dict(TrainConfig, {
        **common, "task": "regions", "data_path": str(tmp_path / "regions"), "output_dir": str(tmp_path / "stage2"),
        "epochs": 2, "batch_size_per_gpu": 2, "local_crops_number": 2,
        "region": {"depth": 2, "embed_dim": 32, "num_heads": 2, "global_crop_size": 3, "local_crop_size": 2},
    })  # fmt: skip
    run = train(stage2)
    assert run.epochs_done == 2 and run.checkpoint.is_file()
    region_vit = build_region_vit(input_dim=192, embed_dim=32, depth=2, num_heads=2, pos_grid=3)
    report = load_region_vit(region_vit, run.teacher_export)  # the export uses the HIPT key names
    assert not report.missing and not report.unexpected

    hipt = load_hipt(teacher, run.teacher_export, tile_size=256, input_size=64)
    image = torch.rand(3, 512, 768)
    out = hipt(image)
    assert out.region.shape == (1, 32) and out.tiles.shape == (6, 192) and torch.isfinite(out.region).all()
