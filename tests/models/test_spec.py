"""One backbone spec and builder: every architecture family, arch auto from a checkpoint, MAE keys, errors."""

from __future__ import annotations

import pytest
import torch

from dino_lib.models import BackboneSpec, build_and_load, build_backbone, infer_architecture, infer_vit_spec

TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def _save_teacher(tmp_path, model, key="teacher"):
    path = tmp_path / "ckpt.pth"
    torch.save({key: {f"backbone.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def test_auto_reads_the_architecture_and_loads_the_weights(tmp_path):
    src = build_backbone("vit_tiny", patch_size=8, depth=3, img_size=64)
    path = _save_teacher(tmp_path, src)
    arch, kwargs = infer_architecture(path)
    assert arch == "vit_tiny" and kwargs["depth"] == 3 and kwargs["patch_size"] == 8 and kwargs["num_heads"] == 3
    assert infer_vit_spec(path) == {"arch": "vit_tiny", "patch_size": 8, "depth": 3}
    model, report = build_and_load(BackboneSpec("auto", weights=path), freeze=True)
    assert report is not None and model.patch_size == 8 and len(model.blocks) == 3
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    for (name, a), b in zip(src.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_auto_takes_the_architecture_from_the_file_over_explicit_sizes(tmp_path):
    path = _save_teacher(tmp_path, build_backbone("vit_tiny", patch_size=8, depth=4, img_size=32))
    model, _ = build_and_load(BackboneSpec("auto", patch_size=16, weights=path, kwargs={"depth": 2}))
    assert len(model.blocks) == 4 and model.patch_size == 8


def test_heads_come_from_the_run_config_beside_the_weights(tmp_path):
    src = build_backbone("vit_small", patch_size=16, **TINY)
    path = _save_teacher(tmp_path, src)
    (tmp_path / "config.yaml").write_text("arch: vit_small\narch_kwargs: {depth: 2, embed_dim: 32, num_heads: 2}\n")
    _, kwargs = infer_architecture(path)
    assert kwargs["num_heads"] == 2
    model, _ = build_and_load(BackboneSpec("auto", weights=path))
    assert model.num_heads == 2


def test_mae_files_use_their_model_key(tmp_path):
    src = build_backbone("mae_vit_base_patch16", depth=1)
    path = tmp_path / "mae.pth"
    torch.save({"model": src.state_dict()}, path)
    model, report = build_and_load(BackboneSpec("mae_vit_base_patch16", patch_size=None, weights=path,
                                                kwargs={"depth": 1}))  # fmt: skip
    assert report is not None and torch.equal(model.pos_embed, src.pos_embed)


@pytest.mark.parametrize(
    "spec, kind",
    [
        (BackboneSpec("vit_small_patch8", patch_size=16, kwargs=TINY), "vit"),
        (BackboneSpec("timm:vit_tiny_patch16_224", patch_size=None, kwargs={"depth": 1}), "timm"),
        (BackboneSpec("resnet18", patch_size=16), "cnn"),
    ],
)
def test_every_family_builds_through_one_function(spec, kind):
    with pytest.warns(UserWarning, match="RANDOM weights"):
        model, report = build_and_load(spec)
    assert report is None and model.embed_dim > 0
    if kind == "vit":
        assert model.patch_size == 8  # the patch in the name wins over the key
    if kind == "cnn":
        assert not hasattr(model, "patch_size")


def test_seeded_random_initialisation_is_reproducible_and_keeps_the_global_rng():
    state = torch.get_rng_state()
    a, _ = build_and_load(BackboneSpec("vit_tiny", kwargs=TINY), seed=3, warn_random=False)
    b, _ = build_and_load(BackboneSpec("vit_tiny", kwargs=TINY), seed=3, warn_random=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth not found.*nothing is downloaded"):
        build_and_load(BackboneSpec("vit_tiny", weights=tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="arch: auto reads the architecture from pretrained_weights"):
        build_and_load(BackboneSpec("auto"))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_and_load(BackboneSpec("vit_gigantic"), warn_random=False)
