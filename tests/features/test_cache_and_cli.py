"""Feature caches, eval backbones from checkpoints, and ``python -m dino_lib.features``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dino_lib.features.cache as cache_mod
from dino_lib.data.labelled import labelled_splits
from dino_lib.features import (
    CacheMismatchError,
    build_eval_backbone,
    cached_extract,
    dump_reference_features,
    eval_transform,
    infer_vit_spec,
    load_reference_features,
)
from dino_lib.features.__main__ import main as features_main
from dino_lib.models import build_backbone


@pytest.fixture()
def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"n": 0}
    real = cache_mod.extract_features

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "extract_features", wrapped)
    return calls


def test_cache_reused_and_invalidated_by_checkpoint_transform_and_layout(
    labelled_folder: Path, tmp_path: Path, counting: dict[str, int]
):
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=1)
    val = labelled_splits(labelled_folder, None, eval_transform(64, 56)).val
    kw = {"cache_dir": tmp_path, "name": "val", "progress": False}
    first = cached_extract(model, val, **kw)
    again = cached_extract(model, val, **kw)
    assert counting["n"] == 1 and torch.equal(first.features, again.features)
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight[0, 0] += 1.0  # a different checkpoint
    changed = cached_extract(model, val, **kw)
    assert counting["n"] == 2 and not torch.equal(changed.features, first.features)
    val.transform = eval_transform(72, 56)
    cached_extract(model, val, **kw)
    cached_extract(model, val, n_last_blocks=1, avgpool=True, **kw)
    assert counting["n"] == 4 and len(list(tmp_path.glob("val-*.pt"))) == 4


def test_reference_dump_refuses_other_settings(tmp_path: Path):
    from dino_lib.features import ExtractedFeatures

    feats = ExtractedFeatures(torch.randn(4, 3), torch.arange(4), torch.arange(4))
    dump_reference_features(tmp_path, feats, feats, {"weights_hash": "abc", "transform": "t"})
    train, _ = load_reference_features(tmp_path, expected_meta={"weights_hash": "abc"})
    assert torch.equal(train.features, feats.features)
    with pytest.raises(CacheMismatchError, match="weights_hash"):
        load_reference_features(tmp_path, expected_meta={"weights_hash": "xyz"})


def test_eval_backbone_from_checkpoint(tmp_path: Path):
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=2)
    ckpt = tmp_path / "full.pth"
    torch.save(
        {
            "teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()},
            "student": {f"module.backbone.{k}": torch.zeros_like(v) for k, v in model.state_dict().items()},
        },
        ckpt,
    )
    assert infer_vit_spec(ckpt) == {"arch": "vit_tiny", "patch_size": 16, "depth": 2}
    loaded, report = build_eval_backbone("auto", pretrained_weights=ckpt)
    assert report is not None and report.source_key == "teacher" and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    student, _ = build_eval_backbone("vit_tiny", depth=2, pretrained_weights=ckpt, checkpoint_key="student")
    assert float(student.blocks[0].attn.qkv.weight.abs().sum()) == 0.0
    assert not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_eval_backbone("vit_tiny", pretrained_weights=tmp_path / "missing.pth")


def test_features_cli_writes_splits_and_reference_files(labelled_folder: Path, tmp_path: Path):
    out = tmp_path / "feats"
    written = features_main(
        [
            f"data_path={labelled_folder}",
            f"output_dir={out}",
            "arch=vit_tiny",
            "depth=1",
            "resize=64",
            "crop=56",
            "num_workers=0",
            "device=cpu",
            "batch_size_per_gpu=16",
        ]
    )
    assert set(written) == {"train", "val"}
    stored = torch.load(out / "val_features.pt", weights_only=True)
    assert stored["features"].shape == (12, 192) and stored["classes"] == ["astronaut", "chelsea", "coffee"]
    train, val = load_reference_features(out)
    assert torch.equal(val.features, stored["features"]) and len(train.labels) == 24


def test_features_cli_delegates_regions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    seen = {}
    monkeypatch.setattr("dino_lib.hierarchical.__main__.extract_main", lambda argv, prog: seen.setdefault("argv", argv))
    cfg = tmp_path / "regions.yaml"
    cfg.write_text("task: regions\nregion_size: 4096\n")
    features_main(["--config", str(cfg), "batch_size=2"])
    assert seen["argv"] == ["--config", str(cfg), "batch_size=2"]
