"""Small-GPU training: gradient accumulation gives the update of the whole batch; gradient checkpointing changes
nothing but memory; both refuse what they cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dino_lib.config import ConfigError
from dino_lib.losses import DINOLoss
from dino_lib.train import train
from dino_lib.utils.io import safe_torch_load

# fp32 on the CPU, no stochastic depth, every parameter trained from the first step (no frozen last layer, no
# warm-up at lr 0), so any difference in the update shows in the weights.
EXACT = {"drop_path_rate": 0.0, "freeze_last_layer": 0, "warmup_epochs": 0, "epochs": 1, "precision": "fp32"}


def _final_state(tiny_cfg, tmp_path: Path, name: str, **over) -> dict:
    cfg = tiny_cfg(output_dir=str(tmp_path / name), **EXACT, **over)
    train(cfg)
    return safe_torch_load(Path(cfg.output_dir) / "checkpoint.pth")


def _assert_close_states(a: dict, b: dict, atol: float, skip_key_bias: bool = False) -> None:
    for part in ("student", "teacher", "dino_loss"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            x, y = a[part][key], b[part][key]
            if skip_key_bias and key.endswith("attn.qkv.bias"):
                # The key bias has an exact gradient of zero (a softmax ignores a shift shared by all keys of a
                # query), so Adam divides pure rounding noise by its own size: compare only the q and v parts.
                dim = x.shape[0] // 3
                x, y = torch.cat([x[:dim], x[2 * dim :]]), torch.cat([y[:dim], y[2 * dim :]])
            torch.testing.assert_close(x, y, rtol=0, atol=atol, msg=f"{part} {key}")


@pytest.mark.slow
def test_micro_batches_give_the_update_of_the_whole_batch(tiny_cfg, tmp_path):
    """Three AdamW iterations of batch 4 against the same iterations as 2 x 2 and 4 x 1 micro-batches (same
    crops: augmentations depend on the seed and the image index only)."""
    whole = _final_state(tiny_cfg, tmp_path, "whole")
    for steps in (2, 4):
        accumulated = _final_state(tiny_cfg, tmp_path, f"acc{steps}", accumulate_steps=steps)
        _assert_close_states(whole, accumulated, atol=1e-5, skip_key_bias=True)
    # the runs did train: the centre left zero and the student moved away from the teacher
    assert whole["dino_loss"]["center"].abs().sum() > 0
    drift = whole["student"]["module.backbone.cls_token"] - whole["teacher"]["backbone.cls_token"]
    assert drift.abs().max() > 1e-5


def test_micro_batches_give_the_same_gradients(tiny_cfg, tmp_path):
    """With SGD the update is the gradient itself: every tensor, the key bias included, agrees."""
    whole = _final_state(tiny_cfg, tmp_path, "sgd", optimizer="sgd", lr=0.5)
    accumulated = _final_state(tiny_cfg, tmp_path, "sgd4", optimizer="sgd", lr=0.5, accumulate_steps=4)
    _assert_close_states(whole, accumulated, atol=1e-5)
    drift = whole["student"]["module.backbone.blocks.0.attn.qkv.weight"]
    assert (drift - whole["teacher"]["backbone.blocks.0.attn.qkv.weight"]).abs().max() > 1e-5


@pytest.mark.ddp
@pytest.mark.slow
def test_accumulation_under_two_processes(tmp_path):
    """torchrun with 2 gloo processes: micro-batches (gradients all-reduced once per batch, centre averaged over
    both processes and all micro-batches) give the update of whole batches."""
    import os
    import subprocess
    import sys

    import yaml

    from .conftest import TINY

    states = {}
    for steps in (1, 2):
        run = str(tmp_path / f"a{steps}")
        cfg = dict(TINY, **EXACT, optimizer="sgd", lr=0.5, accumulate_steps=steps, max_images=16, output_dir=run)
        path = tmp_path / f"a{steps}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        cmd += ["-m", "dino_lib.train", "--config", str(path)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        states[steps] = safe_torch_load(Path(run) / "checkpoint.pth")
        assert states[steps]["iteration"] == 2  # 16 images, 2 processes x 4: two updates
    _assert_close_states(states[1], states[2], atol=1e-5)


def test_centre_is_the_mean_over_the_whole_batch():
    """Micro-batch losses with the centre left alone, then one update, equal the loss and centre of one batch."""
    gen = torch.Generator().manual_seed(0)
    batch, k, ncrops = 6, 16, 4
    student = torch.randn(ncrops, batch, k, generator=gen)
    teacher = torch.randn(2, batch, k, generator=gen)
    whole, parts = DINOLoss(k, ncrops, 0.04, 0.04, 0, 1), DINOLoss(k, ncrops, 0.04, 0.04, 0, 1)
    for loss in (whole, parts):
        loss.center.copy_(torch.randn(1, k, generator=gen) if loss is whole else whole.center)
    expected = whole(student.reshape(-1, k), teacher.reshape(-1, k), 0)
    got, outs = 0.0, []
    for chunk in (slice(0, 2), slice(2, 4), slice(4, 6)):
        s, t = student[:, chunk].reshape(-1, k), teacher[:, chunk].reshape(-1, k)
        got = got + parts(s, t, 0, update_center=False) / 3
        outs.append(t)
    assert torch.equal(parts.center, whole.center * 0 + parts.center)  # untouched so far
    parts.update_center(torch.cat(outs))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(parts.center, whole.center)


def test_gradient_checkpointing_keeps_the_update(tiny_cfg, tmp_path):
    plain = _final_state(tiny_cfg, tmp_path, "plain")
    checkpointed = _final_state(tiny_cfg, tmp_path, "ckpt", grad_checkpointing=True)
    _assert_close_states(plain, checkpointed, atol=1e-6)


def test_gradient_checkpointing_recomputes_the_blocks():
    """The flag really routes the DINO ViT through torch's checkpoint (the blocks run again in the backward)."""
    from dino_lib.models import build_backbone

    model = build_backbone("vit_tiny", depth=2, embed_dim=32, num_heads=2)
    calls = {"n": 0}
    mlp_forward = model.blocks[0].mlp.forward

    def counting(x: torch.Tensor) -> torch.Tensor:  # (forward hooks do not fire during the recomputation)
        calls["n"] += 1
        return mlp_forward(x)

    model.blocks[0].mlp.forward = counting
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    assert calls["n"] == 1
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    assert calls["n"] == 3  # forward + recomputation in the backward
    with torch.no_grad():
        model(x)
    assert calls["n"] == 4  # no checkpointing without gradients


def test_accumulation_must_divide_the_batch(tiny_cfg):
    with pytest.raises(ConfigError, match="accumulate_steps \\(3\\) must divide batch_size_per_gpu \\(4\\)"):
        tiny_cfg(accumulate_steps=3)


def test_gradient_checkpointing_needs_a_backbone_that_supports_it(tiny_cfg):
    cfg = tiny_cfg(arch="resnet18", arch_kwargs={}, grad_checkpointing=True, epochs=1, warmup_epochs=0)
    with pytest.raises(ValueError, match="grad_checkpointing: the backbone 'resnet18' has no set_grad_checkpointing"):
        train(cfg)
