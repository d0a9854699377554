"""Checkpoint loading: released DINO layouts, MAE, timm, ResNet, and every error."""

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
    """A released *_full_checkpoint.pth-like training dict."""
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


# --- file formats and other key layouts -------------------------------------------------------------------------


def dinov2_timm(seed: int, name: str = "vit_small_patch14_reg4_dinov2", **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    kw = {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 56, **kw}
    model = build_backbone(f"timm:{name}", **kw)
    with torch.no_grad():  # timm starts the CLS token at std 1e-6; trained tokens are not that small
        model.cls_token.normal_(std=0.02)
    return model


def to_dinov2_native(timm_state: dict[str, torch.Tensor], cls_pos: torch.Tensor) -> dict[str, torch.Tensor]:
    """DINOv2's own layout of a timm register model: CLS keeps a positional entry, registers are
    ``register_tokens``, and a training-only ``mask_token`` is present."""
    state = {k: v.clone() for k, v in timm_state.items()}
    state["register_tokens"] = state.pop("reg_token")
    state["cls_token"] = state["cls_token"] - cls_pos
    state["pos_embed"] = torch.cat([cls_pos, state["pos_embed"]], dim=1)
    state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    return state


def test_safetensors_file_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = tiny(1, depth=2)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target = tiny(2, depth=2)
    report = load_pretrained(target, tmp_path / "w.safetensors")
    assert report.loaded == len(source.state_dict())
    assert_same_weights(target, source.state_dict())
    # recognised by its content whatever the suffix (hub downloads are sometimes renamed)
    (tmp_path / "w.bin").write_bytes((tmp_path / "w.safetensors").read_bytes())
    load_pretrained(tiny(3, depth=2), tmp_path / "w.bin")


def test_bin_and_pt_suffixes_load_torch_pickles(tmp_path: Path) -> None:
    source = tiny(1, depth=1)
    for name in ("pytorch_model.bin", "w.pt"):
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / name)
        target = tiny(2, depth=1)
        load_pretrained(target, tmp_path / name)
        assert_same_weights(target, source.state_dict())


def test_timm_dinov2_safetensors_loads_into_timm_model(tmp_path: Path) -> None:
    """A timm-format DINOv2 file (as the hub's model.safetensors): same keys as the timm model."""
    from safetensors.torch import save_file

    source = dinov2_timm(1)
    save_file(dict(source.state_dict()), str(tmp_path / "model.safetensors"))
    target = dinov2_timm(2)
    load_pretrained(target, tmp_path / "model.safetensors")
    assert_same_weights(target, source.state_dict())


def test_dinov2_native_layout_with_registers_and_layer_scale(tmp_path: Path) -> None:
    source = dinov2_timm(3)
    state = source.state_dict()
    assert "blocks.0.ls1.gamma" in state and "reg_token" in state
    cls_pos = 0.02 * torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(0))
    torch.save(to_dinov2_native(state, cls_pos), tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    target = dinov2_timm(4)
    report = load_pretrained(target, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    assert report.ignored == ["mask_token"] and not report.resampled
    own = target.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(own[key], value, msg=key)  # CLS position folded back into cls_token
    x = torch.randn(1, 3, 56, 56)
    torch.testing.assert_close(target.eval()(x), source.eval()(x))


def test_dinov2_native_positional_grid_is_read_from_the_tensor(tmp_path: Path) -> None:
    """A 518-px DINOv2 file has a 37 x 37 table; here a 6 x 6 table (84 px) goes into a 4 x 4 model (56 px)."""
    source = dinov2_timm(5, img_size=84)
    cls_pos = torch.zeros(1, 1, 64)
    torch.save(to_dinov2_native(source.state_dict(), cls_pos), tmp_path / "native.pth")
    target = dinov2_timm(6)
    report = load_pretrained(target, tmp_path / "native.pth")
    assert report.resampled == ["pos_embed"] and target.pos_embed.shape == (1, 16, 64)
    torch.testing.assert_close(target.cls_token, source.cls_token)


def test_dinov2_training_checkpoint_with_chunked_blocks(tmp_path: Path) -> None:
    """DINOv2 training files: ``model`` with ``teacher.backbone.`` / ``student.backbone.`` prefixes, blocks nested
    by chunk (``blocks.<chunk>.<i>.``) and ``dino_head`` / ``ibot_head`` parts."""
    teacher, student = dinov2_timm(7).state_dict(), dinov2_timm(8).state_dict()

    def native(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in to_dinov2_native(state, torch.zeros(1, 1, 64)).items():
            if key.startswith("blocks."):
                index = int(key.split(".")[1])
                key = f"blocks.{index // 2}.{key[len('blocks.') :]}"  # chunks of 2 blocks: blocks.0.0., blocks.0.1.
            out[f"{prefix}.backbone.{key}"] = value
        out[f"{prefix}.dino_head.mlp.0.weight"] = torch.zeros(8, 64)
        out[f"{prefix}.ibot_head.mlp.0.weight"] = torch.zeros(8, 64)
        return out

    torch.save({"model": {**native(teacher, "teacher"), **native(student, "student")}}, tmp_path / "model_final.pth")
    model = dinov2_timm(9)
    report = load_pretrained(model, tmp_path / "model_final.pth")
    assert report.source_key == "model/teacher"
    assert "dino_head.mlp.0.weight" in report.ignored and "ibot_head.mlp.0.weight" in report.ignored
    assert_same_weights(model, teacher)
    load_pretrained(model, tmp_path / "model_final.pth", checkpoint_key="student")
    assert_same_weights(model, student)


@pytest.mark.parametrize("split", [False, True], ids=["packed", "split"])
def test_dinov2_swiglu_blocks_load_into_timm_swiglu(tmp_path: Path, split: bool) -> None:
    """ViT-g's SwiGLU (``mlp.w12`` / ``mlp.w3``) into timm's packed GluMlp or its split SwiGLU; outputs agree."""
    from timm.layers import SwiGLU

    kw = {"depth": 1, "embed_dim": 48, "num_heads": 2, "img_size": 28}
    source = dinov2_timm(10, "vit_giant_patch14_dinov2", **kw).eval()
    state = {}
    for key, value in source.state_dict().items():
        state[key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")] = value
    state["mask_token"] = torch.zeros(1, 48)
    torch.save(state, tmp_path / "dinov2_vitg14_pretrain.pth")
    extra = {"mlp_layer": SwiGLU, "mlp_ratio": 2.66667} if split else {}
    target = dinov2_timm(11, "vit_giant_patch14_dinov2", **kw, **extra).eval()
    assert ("blocks.0.mlp.fc1_g.weight" in target.state_dict()) == split
    load_pretrained(target, tmp_path / "dinov2_vitg14_pretrain.pth")
    x = torch.randn(2, 3, 28, 28)
    torch.testing.assert_close(target(x), source(x))


def test_mismatch_error_lists_keys_and_names_the_architecture(tmp_path: Path) -> None:
    kw = {"depth": 1, "embed_dim": 384, "num_heads": 6}  # ViT-S width, so a released name can be suggested
    torch.save(to_dinov2_native(dinov2_timm(12, **kw).state_dict(), torch.zeros(1, 1, 384)), tmp_path / "reg.pth")
    torch.manual_seed(0)
    model = build_backbone("timm:vit_small_patch14_dinov2", img_size=56, **kw)
    with pytest.raises(CheckpointError) as info:
        load_pretrained(model, tmp_path / "reg.pth")
    text = str(info.value)
    assert str(tmp_path / "reg.pth") in text and "unexpected ['register_tokens']" in text
    assert "4 register tokens" in text and "timm:vit_small_patch14_reg4_dinov2" in text, text


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


def to_transformers(native: dict[str, torch.Tensor], *, dinov2: bool) -> dict[str, torch.Tensor]:
    """Hugging Face ``Dinov2Model`` (``dinov2=True``) or ``ViTModel`` names for a DINOv2-/DINO-layout state dict."""
    top = {
        "cls_token": "embeddings.cls_token",
        "mask_token": "embeddings.mask_token",
        "register_tokens": "embeddings.register_tokens",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    names = {
        "norm1.": "norm1." if dinov2 else "layernorm_before.",
        "norm2.": "norm2." if dinov2 else "layernorm_after.",
        "attn.proj.": "attention.output.dense.",
        "ls1.gamma": "layer_scale1.lambda1",
        "ls2.gamma": "layer_scale2.lambda1",
        "mlp.fc1.": "mlp.fc1." if dinov2 else "intermediate.dense.",
        "mlp.fc2.": "mlp.fc2." if dinov2 else "output.dense.",
    }
    out = {}
    for key, value in native.items():
        if key in top:
            out[top[key]] = value
            continue
        _, index, rest = key.split(".", 2)
        if rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), value.chunk(3)):
                out[f"encoder.layer.{index}.attention.attention.{name}.{kind}"] = part
            continue
        old = next(o for o in names if rest.startswith(o))
        out[f"encoder.layer.{index}.{names[old]}{rest[len(old) :]}"] = value
    return out


def test_transformers_dinov2_with_registers_loads(tmp_path: Path) -> None:
    """A Hugging Face Dinov2WithRegisters checkpoint (model.safetensors, ``dinov2.`` prefix of the task models)."""
    from safetensors.torch import save_file

    source = dinov2_timm(20).eval()
    cls_pos = 0.02 * torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(1))
    hf = to_transformers(to_dinov2_native(source.state_dict(), cls_pos), dinov2=True)
    assert "encoder.layer.1.attention.attention.key.bias" in hf and "embeddings.register_tokens" in hf
    save_file({f"dinov2.{k}": v.contiguous() for k, v in hf.items()}, str(tmp_path / "model.safetensors"))
    target = dinov2_timm(21).eval()
    report = load_pretrained(target, tmp_path / "model.safetensors")
    assert report.ignored == ["mask_token"]
    x = torch.randn(2, 3, 56, 56)
    torch.testing.assert_close(target(x), source(x))


def test_transformers_dino_vit_loads_into_our_vit(tmp_path: Path) -> None:
    """A Hugging Face ViTModel of DINO (facebook/dino-vits16 layout), pooler included."""
    source = tiny(22, depth=2).eval()
    hf = to_transformers(source.state_dict(), dinov2=False)
    assert "encoder.layer.0.intermediate.dense.weight" in hf
    hf["pooler.dense.weight"] = torch.zeros(192, 192)
    torch.save({f"vit.{k}": v for k, v in hf.items()}, tmp_path / "pytorch_model.bin")
    target = tiny(23, depth=2).eval()
    report = load_pretrained(target, tmp_path / "pytorch_model.bin")
    assert report.ignored == ["pooler.dense.weight"]
    assert_same_weights(target, source.state_dict())
