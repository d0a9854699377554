"""Linear probe: feature layouts, learning, checkpoint/resume, reference keys."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from dino_lib.eval.linear import (
    LinearClassifier,
    ProbeHyperparameters,
    linear_state_dict,
    load_linear_state,
    train_linear_probe,
)
from dino_lib.features import backbone_features, linear_features
from dino_lib.models import DinoVisionTransformer


@pytest.fixture(scope="module")
def tiny_vit() -> DinoVisionTransformer:
    torch.manual_seed(0)
    return DinoVisionTransformer(patch_size=16, embed_dim=32, depth=3, num_heads=2).eval()


def test_interleaved_layout_golden():
    """Reference layout: element 2j is CLS channel j and element 2j+1 the patch-average channel j (n = 1)."""
    block = torch.randn(2, 5, 6)  # (B, 1 + 4 patches, D)
    feat = linear_features([block], avgpool=True, interleave=True)
    avg = block[:, 1:].mean(1)
    assert feat.shape == (2, 12)
    assert torch.equal(feat[:, 0::2], block[:, 0]) and torch.allclose(feat[:, 1::2], avg)


def test_appended_layout_for_any_n_and_interleave_limits():
    blocks = [torch.randn(3, 5, 4) for _ in range(3)]  # oldest first
    feat = linear_features(blocks, avgpool=True)
    assert feat.shape == (3, 16)
    for i, b in enumerate(blocks):
        assert torch.equal(feat[:, 4 * i : 4 * (i + 1)], b[:, 0])  # CLS tokens, oldest block first
    assert torch.allclose(feat[:, 12:], blocks[-1][:, 1:].mean(1))  # average of the LAST block's patch tokens
    assert torch.equal(linear_features(blocks), feat[:, :12])
    with pytest.raises(ValueError, match="only for n_last_blocks=1"):
        linear_features(blocks, avgpool=True, interleave=True)


def test_backbone_layouts_on_a_vit(tiny_vit: DinoVisionTransformer):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(backbone_features(tiny_vit, x), tiny_vit(x))  # k-NN feature = final-normed CLS
        layers = tiny_vit.get_intermediate_layers(x, n=2)
        f2 = backbone_features(tiny_vit, x, n_last_blocks=2, avgpool=True)
        assert f2.shape == (2, 3 * 32)
        assert torch.allclose(f2[:, 32:64], tiny_vit(x), atol=1e-6)  # last block's CLS = the model output
        assert torch.allclose(f2[:, :32], layers[0][:, 0], atol=1e-6)


def test_non_vit_backbones_refuse_multi_block_layouts():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(1, 3, 8, 8)
    assert backbone_features(cnn, x).shape == (1, 4)
    with pytest.raises(ValueError, match="get_intermediate_layers"):
        backbone_features(cnn, x, n_last_blocks=2)


def _separable(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(4, 20, generator=torch.Generator().manual_seed(99))
    labels = torch.arange(4).repeat(n)
    return TensorDataset(centres[labels] + torch.randn(len(labels), 20, generator=g), labels)


def test_probe_reaches_high_accuracy_on_separable_features(tmp_path):
    result = train_linear_probe(
        lambda x: x,
        _separable(50, 0),
        _separable(25, 1),
        dim=20,
        num_labels=4,
        hparams=ProbeHyperparameters(epochs=10, lr=2.0, batch_size=32),
        output_dir=tmp_path,
        progress=False,
    )
    assert result["best_acc"] >= 95.0 and result["last_acc"] >= 95.0
    assert len(result["history"]) == 10 and result["lr"] == pytest.approx(2.0 * 32 / 256)
    assert (tmp_path / "checkpoint.pth.tar").is_file() and (tmp_path / "linear_results.json").is_file()
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 10


def test_resume_continues_exactly(tmp_path):
    kwargs = {
        "dim": 20,
        "num_labels": 4,
        "hparams": ProbeHyperparameters(epochs=4, lr=0.5, batch_size=16),
        "progress": False,
    }
    full = train_linear_probe(lambda x: x, _separable(10, 0), _separable(5, 1), output_dir=tmp_path / "a", **kwargs)
    calls = {"n": 0}

    def crashing(x):
        calls["n"] += 1
        if calls["n"] > 8:  # 3 train + 2 val batches per epoch: crash inside the second epoch
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        train_linear_probe(crashing, _separable(10, 0), _separable(5, 1), output_dir=tmp_path / "b", **kwargs)
    resumed = train_linear_probe(lambda x: x, _separable(10, 0), _separable(5, 1), output_dir=tmp_path / "b", **kwargs)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2, 3]
    a = torch.load(tmp_path / "a" / "checkpoint.pth.tar", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoint.pth.tar", weights_only=True)["state_dict"]
    assert set(a) == {"module.linear.weight", "module.linear.bias"}
    assert all(torch.allclose(a[k], b[k]) for k in a)
    assert resumed["best_acc"] == pytest.approx(full["best_acc"])


def test_reference_linear_keys_round_trip():
    clf = LinearClassifier(8, 3)
    assert clf.linear.bias.abs().sum() == 0 and 0.005 < clf.linear.weight.std() < 0.015  # N(0, 0.01²) init
    other = LinearClassifier(8, 3)
    load_linear_state(other, {"state_dict": linear_state_dict(clf)})
    assert torch.equal(other.linear.weight, clf.linear.weight)
    with pytest.raises(ValueError, match="do not fit"):
        load_linear_state(LinearClassifier(8, 5), linear_state_dict(clf), "w.pth")


def test_checkpoint_of_other_features_is_not_resumed(tmp_path, caplog):
    kwargs = {
        "dim": 20,
        "num_labels": 4,
        "hparams": ProbeHyperparameters(epochs=2, lr=0.5, batch_size=16),
        "progress": False,
        "output_dir": tmp_path,
    }
    train_linear_probe(lambda x: x, _separable(5, 0), _separable(5, 1), signature={"weights_hash": "a"}, **kwargs)
    same = train_linear_probe(
        lambda x: x, _separable(5, 0), _separable(5, 1), signature={"weights_hash": "a"}, **kwargs
    )
    assert len(same["history"]) == 2  # finished run: resumed, nothing trained again
    with caplog.at_level("WARNING"):
        other = train_linear_probe(
            lambda x: -x, _separable(5, 0), _separable(5, 1), signature={"weights_hash": "b"}, **kwargs
        )
    assert "starting the linear probe afresh" in caplog.text and len(other["history"]) == 2
    ckpt = torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["signature"] == {"weights_hash": "b"}
