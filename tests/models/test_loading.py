"""Checkpoint loading: released DINO layouts, MAE, timm, ResNet, and every error (training.md §14.4, §15)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision

from dino_lib.models import CheckpointError, build_backbone, load_pretrained, state_dict_hash

_EXECUTED: list[str] = []


def _side_effect(tag: str) -> str:
    _EXECUTED.append(tag)
    return tag


class Payload:
    """A custom class: unpickling it would run arbitrary code, so the allow-list must refuse it."""

    def __reduce__(self):
        return (_side_effect, ("unpickled",))


def tiny(seed: int, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone("vit_tiny", **kw)


def assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)


def head_state(seed: int, dim: int = 192) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "mlp.0.weight": torch.randn(64, dim, generator=gen),
        "mlp.0.bias": torch.zeros(64),
        "last_layer.weight_g": torch.ones(100, 1),
        "last_layer.weight_v": torch.randn(100, 64, generator=gen),
    }


def test_state_dict_round_trips_strictly(tmp_path: Path) -> None:
    source = tiny(1, depth=2)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    target = tiny(2, depth=2)
    report = load_pretrained(target, tmp_path / "w.pth")
    assert_same_weights(target, source.state_dict())
    assert report.loaded == len(source.state_dict()) and not report.missing and not report.unexpected
    assert report.source_key is None


def test_released_backbone_only_file_loads_strictly(tmp_path: Path) -> None:
    """dino_deitsmall16_pretrain.pth-like: a plain 150-key state dict without prefixes or head."""
    source = tiny(3)
    state = source.state_dict()
    assert len(state) == 150
    torch.save(state, tmp_path / "dino_vittiny16_pretrain.pth")
    target = tiny(4)
    report = load_pretrained(target, tmp_path / "dino_vittiny16_pretrain.pth")
    assert report.loaded == 150
    assert_same_weights(target, state)


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A released *_full_checkpoint.pth-like training dict (training.md §14.1)."""
    teacher, student = tiny(10, depth=2).state_dict(), tiny(11, depth=2).state_dict()
    ckpt = {
        "student": {
            **{f"module.backbone.{k}": v for k, v in student.items()},
            **{f"module.head.{k}": v for k, v in head_state(1).items()},
        },
        "teacher": {
            **{f"backbone.{k}": v for k, v in teacher.items()},
            **{f"head.{k}": v for k, v in head_state(2).items()},
        },
        "optimizer": {
            "state": {0: {"exp_avg": torch.zeros(3)}},
            "param_groups": [{"lr": np.float64(5e-4), "weight_decay": np.float64(0.04), "params": [0]}],
        },
        "epoch": np.int64(100),
        "loss": np.float64(2.5),
        "args": argparse.Namespace(arch="vit_tiny", patch_size=16, out_dim=100, lr=0.0005),
        "dino_loss": {"center": torch.zeros(1, 100)},
    }
    path = tmp_path_factory.mktemp("ckpt") / "dino_vittiny16_full_checkpoint.pth"
    torch.save(ckpt, path)
    return path, teacher, student


def test_full_checkpoint_loads_teacher(full_checkpoint: tuple[Path, dict, dict]) -> None:
    path, teacher, _ = full_checkpoint
    model = tiny(0, depth=2)
    report = load_pretrained(model, path)  # checkpoint_key defaults to teacher
    assert report.source_key == "teacher"
    assert_same_weights(model, teacher)
    assert sorted(report.ignored) == sorted(f"head.{k}" for k in head_state(0))


def test_full_checkpoint_loads_student(full_checkpoint: tuple[Path, dict, dict]) -> None:
    path, teacher, student = full_checkpoint
    model = tiny(0, depth=2)
    report = load_pretrained(model, path, checkpoint_key="student")
    assert report.source_key == "student"
    assert_same_weights(model, student)
    assert not torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], teacher["blocks.0.attn.qkv.weight"])


def test_full_checkpoint_unknown_key_is_an_error(full_checkpoint: tuple[Path, dict, dict]) -> None:
    with pytest.raises(CheckpointError, match="checkpoint_key 'ema'"):
        load_pretrained(tiny(0, depth=2), full_checkpoint[0], checkpoint_key="ema")


def test_mae_checkpoint_loads_encoder(tmp_path: Path) -> None:
    encoder = tiny(5, depth=2).state_dict()
    gen = torch.Generator().manual_seed(0)
    decoder = {
        "mask_token": torch.randn(1, 1, 128, generator=gen),
        "decoder_embed.weight": torch.randn(128, 192, generator=gen),
        "decoder_pos_embed": torch.randn(1, 197, 128, generator=gen),
        "decoder_blocks.0.norm1.weight": torch.ones(128),
        "decoder_norm.weight": torch.ones(128),
        "decoder_pred.weight": torch.randn(768, 128, generator=gen),
    }
    torch.save(
        {"model": {**encoder, **decoder}, "epoch": 799, "args": argparse.Namespace(model="mae")}, tmp_path / "mae.pth"
    )
    model = tiny(6, depth=2)
    report = load_pretrained(model, tmp_path / "mae.pth")
    assert report.source_key == "model"
    assert sorted(report.ignored) == sorted(decoder)
    assert_same_weights(model, encoder)


def test_timm_state_dict_loads_into_timm_backbone(tmp_path: Path) -> None:
    torch.manual_seed(7)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, depth=2)
    torch.save(source.state_dict(), tmp_path / "timm.pth")
    torch.manual_seed(8)
    target = build_backbone("timm:vit_tiny_patch16_224", depth=2)
    report = load_pretrained(target, tmp_path / "timm.pth")
    assert report.ignored == ["head.bias", "head.weight"]
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    assert_same_weights(target, expected)


def test_resnet50_without_fc_loads(tmp_path: Path) -> None:
    torch.manual_seed(9)
    source = torchvision.models.resnet50()
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    torch.save(state, tmp_path / "dino_resnet50_pretrain.pth")
    target = build_backbone("resnet50")
    assert target.embed_dim == 2048
    load_pretrained(target, tmp_path / "dino_resnet50_pretrain.pth")
    assert_same_weights(target, state)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "teacher.pth"
    with pytest.raises(FileNotFoundError, match=str(path)):
        load_pretrained(tiny(0, depth=1), path)


def test_patch_size_mismatch(tmp_path: Path) -> None:
    torch.save(tiny(0, depth=1, patch_size=8).state_dict(), tmp_path / "p8.pth")
    with pytest.raises(CheckpointError, match="patch size 8.*patch size 16.*patch_size=8"):
        load_pretrained(tiny(0, depth=1), tmp_path / "p8.pth")


def test_embedding_size_mismatch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(build_backbone("vit_small", depth=1).state_dict(), tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="embedding size 384.*has 192"):
        load_pretrained(tiny(0, depth=1), tmp_path / "small.pth")


def test_missing_non_head_keys_fail_in_strict_mode(tmp_path: Path) -> None:
    state = {k: v for k, v in tiny(0, depth=2).state_dict().items() if not k.startswith("blocks.1.")}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"missing \['blocks\.1\.") as info:
        load_pretrained(tiny(1, depth=2), tmp_path / "partial.pth")
    assert str(tmp_path / "partial.pth") in str(info.value)
    model = tiny(1, depth=2)
    report = load_pretrained(model, tmp_path / "partial.pth", strict=False)
    assert len(report.missing) == 12 and all(k.startswith("blocks.1.") for k in report.missing)
    torch.testing.assert_close(model.state_dict()["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])


def test_unexpected_non_head_keys_fail_in_strict_mode(tmp_path: Path) -> None:
    state = tiny(0, depth=1).state_dict()
    state["register_tokens"] = torch.zeros(1, 4, 192)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected \\['register_tokens'\\]"):
        load_pretrained(tiny(0, depth=1), tmp_path / "extra.pth")


def test_disallowed_pickled_class_is_refused(tmp_path: Path) -> None:
    state = tiny(0, depth=1).state_dict()
    torch.save({"model": state, "extra": Payload()}, tmp_path / "evil.pth")
    _EXECUTED.clear()
    with pytest.raises(ValueError, match="weights_only=True"):
        load_pretrained(tiny(0, depth=1), tmp_path / "evil.pth")
    assert _EXECUTED == []  # the payload never ran


def test_positional_table_of_another_grid_is_resampled(tmp_path: Path) -> None:
    torch.save(tiny(0, depth=1, img_size=96).state_dict(), tmp_path / "96.pth")
    model = tiny(1, depth=1)
    report = load_pretrained(model, tmp_path / "96.pth")
    assert report.resampled == ["pos_embed"] and model.pos_embed.shape == (1, 197, 192)


def test_state_dict_hash_tracks_content() -> None:
    model = tiny(0, depth=1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    base = state_dict_hash(model)
    assert state_dict_hash(state) == base
    state["blocks.0.norm1.bias"][3] += 1e-3
    assert state_dict_hash(state) != base
    renamed = {("x." + k if k == "norm.bias" else k): v for k, v in model.state_dict().items()}
    assert state_dict_hash(renamed) != base
    # 0-dim buffers (BatchNorm's num_batches_tracked) hash too
    bn = torch.nn.BatchNorm1d(4)
    h0 = state_dict_hash(bn)
    bn.num_batches_tracked += 1
    assert state_dict_hash(bn) != h0


def test_non_finite_or_integer_weights_are_refused(tmp_path):
    model = build_backbone("vit_tiny", patch_size=16, depth=2)
    state = model.state_dict()
    broken = dict(state, **{"blocks.1.mlp.fc1.weight": state["blocks.1.mlp.fc1.weight"].clone().fill_(float("inf"))})
    torch.save(broken, tmp_path / "inf.pth")
    with pytest.raises(CheckpointError, match=r"inf\.pth: 1 tensor\(s\) hold NaN or Inf values \(blocks\.1\.mlp\.fc1"):
        load_pretrained(model, tmp_path / "inf.pth", checkpoint_key=None)
    torch.save({k: v.long() for k, v in state.items()}, tmp_path / "int.pth")
    with pytest.raises(CheckpointError, match=r"int\.pth: tensors .* are not floating point"):
        load_pretrained(model, tmp_path / "int.pth", checkpoint_key=None)
    torch.save(state, tmp_path / "ok.pth")
    assert load_pretrained(model, tmp_path / "ok.pth", checkpoint_key=None).loaded == len(state)
