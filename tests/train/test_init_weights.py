"""Continued pretraining: a run started from saved weights begins at them (backbones, optionally head and centre)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dino_lib.distributed import DistInfo
from dino_lib.models import CheckpointError
from dino_lib.train import train
from dino_lib.train.setup import build_run
from dino_lib.utils.io import safe_torch_load


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of tiny training; its teacher is the "released" model of these tests (exported in both formats)."""
    from dino_lib.config import load_config
    from dino_lib.train import TrainConfig

    from .conftest import TINY

    run = tmp_path_factory.mktemp("released") / "run"
    cfg = dict(TINY, epochs=1, warmup_epochs=0, output_dir=str(run), export_safetensors=True)
    train(load_config(TrainConfig, None, cfg))
    return run


def _parts(cfg):
    return build_run(cfg, DistInfo(), torch.device("cpu"))


def _backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}


@pytest.mark.parametrize("name", ["teacher_backbone.pth", "teacher_backbone.safetensors", "checkpoint.pth"])
def test_run_starts_at_the_saved_teacher(tiny_cfg, finished_run: Path, name: str):
    saved = _backbone(safe_torch_load(finished_run / "checkpoint.pth")["teacher"])
    parts = _parts(tiny_cfg(init_weights=str(finished_run / name), global_crops_size=48))
    for net in (parts.student, parts.teacher):
        own = net.backbone.state_dict()
        for key, value in saved.items():
            if key != "pos_embed":
                assert torch.equal(own[key], value), key
    # a fresh run (same seed) starts elsewhere: the weights above came from the file
    fresh = _parts(tiny_cfg())
    assert not torch.equal(fresh.student.backbone.cls_token, saved["cls_token"])
    # heads stay freshly initialised unless init_head is set
    assert torch.equal(parts.student.head.mlp[0].weight, fresh.student.head.mlp[0].weight)


def test_positional_table_of_another_size_is_interpolated(tiny_cfg, finished_run: Path, tmp_path: Path):
    """Weights saved at 32-px crops (2 x 2 grid) go into a run whose table is 224 px (14 x 14)."""
    parts = _parts(tiny_cfg(init_weights=str(finished_run / "teacher_backbone.pth")))
    assert parts.student.backbone.pos_embed.shape[1] == 1 + 14 * 14
    saved = safe_torch_load(finished_run / "teacher_backbone.pth")
    assert saved["pos_embed"].shape[1] == 1 + 14 * 14  # our ViTs keep a 224-px table whatever the crop size
    small = {**saved, "pos_embed": saved["pos_embed"][:, :5]}  # CLS + a 2 x 2 grid
    torch.save(small, tmp_path / "small_grid.pth")
    parts = _parts(tiny_cfg(init_weights=str(tmp_path / "small_grid.pth")))
    assert parts.student.backbone.pos_embed.shape == saved["pos_embed"].shape
    assert torch.equal(parts.student.backbone.pos_embed[:, 0], small["pos_embed"][:, 0])


def test_init_head_takes_the_head_and_the_centre(tiny_cfg, finished_run: Path):
    ckpt = safe_torch_load(finished_run / "checkpoint.pth")
    parts = _parts(tiny_cfg(init_weights=str(finished_run / "checkpoint.pth"), init_head=True))
    head = {k[len("head.") :]: v for k, v in ckpt["teacher"].items() if k.startswith("head.")}
    own = parts.teacher.head.state_dict()
    assert own.keys() == head.keys() and all(torch.equal(own[k], head[k]) for k in head)
    assert torch.equal(parts.dino_loss.center, ckpt["dino_loss"]["center"])
    student = safe_torch_load(finished_run / "checkpoint.pth")["student"]
    parts = _parts(tiny_cfg(init_weights=str(finished_run / "checkpoint.pth"), init_checkpoint_key="student"))
    assert torch.equal(parts.teacher.backbone.cls_token, student["module.backbone.cls_token"])


def test_init_head_errors_are_clear(tiny_cfg, finished_run: Path):
    with pytest.raises(CheckpointError, match="holds no head"):
        _parts(tiny_cfg(init_weights=str(finished_run / "teacher_backbone.pth"), init_head=True))
    with pytest.raises(CheckpointError, match="(?s)does not fit this run's head.*Set out_dim"):
        _parts(tiny_cfg(init_weights=str(finished_run / "checkpoint.pth"), init_head=True, out_dim=32))
    with pytest.raises(CheckpointError, match="embedding size 32, the model has 48"):
        _parts(tiny_cfg(init_weights=str(finished_run / "teacher_backbone.pth"), arch_kwargs={"depth": 2,
               "embed_dim": 48, "num_heads": 2}))  # fmt: skip
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        _parts(tiny_cfg(init_weights="nowhere.pth"))


def test_a_resumed_run_keeps_its_own_weights(tiny_cfg, finished_run: Path, tmp_path: Path):
    """init_weights applies to the first start only; afterwards the run resumes from RUN_DIR/checkpoint.pth."""
    init = tmp_path / "init.pth"
    shutil.copy(finished_run / "teacher_backbone.pth", init)
    train(tiny_cfg(epochs=1, warmup_epochs=0, init_weights=str(init)))
    init.unlink()  # no longer read: continuing the run must not need it
    cfg = tiny_cfg(epochs=2, warmup_epochs=0, init_weights=str(init))
    train(cfg)
    assert safe_torch_load(Path(cfg.output_dir) / "checkpoint.pth")["epoch"] == 2
