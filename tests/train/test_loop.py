"""End-to-end training in one process: outputs, checkpoint layout, exports, resume, failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from dino_lib.config import ConfigError, load_config
from dino_lib.launch import default_callbacks
from dino_lib.models import build_backbone
from dino_lib.train import NonFiniteLossError, TrainConfig, train
from dino_lib.train.monitors import collapse_warnings, read_log
from dino_lib.utils.io import safe_torch_load


def test_tiny_run_writes_reference_layout(tiny_cfg):
    cfg = tiny_cfg()
    events = []
    res = train(cfg, callback=events.append)
    run = Path(cfg.output_dir)
    for name in (
        "checkpoint.pth",
        "checkpoint0000.pth",
        "checkpoint0001.pth",
        "teacher_backbone.pth",
        "config.yaml",
        "log.jsonl",
    ):
        assert (run / name).is_file(), name
    ckpt = safe_torch_load(run / "checkpoint.pth")
    assert ckpt["epoch"] == 2 and ckpt["iteration_in_epoch"] == 0 and isinstance(ckpt["config"], dict)
    assert all(k.startswith(("module.backbone.", "module.head.")) for k in ckpt["student"])
    assert all(k.startswith(("backbone.", "head.")) for k in ckpt["teacher"])
    assert "head.last_layer.weight_g" in ckpt["teacher"] and ckpt["dino_loss"]["center"].shape == (1, 64)
    assert {"torch", "numpy", "python"} <= set(ckpt["rng_state"])
    # backbone-only export: released layout, loads strictly into our backbone
    export = safe_torch_load(run / "teacher_backbone.pth")
    assert "cls_token" in export and not any(k.startswith(("head.", "backbone.", "module.")) for k in export)
    bb = build_backbone("vit_tiny", **cfg.arch_kwargs)
    bb.load_state_dict(export, strict=True)
    teacher_bb = {k[len("backbone.") :]: v for k, v in ckpt["teacher"].items() if k.startswith("backbone.")}
    assert all(torch.equal(export[k], teacher_bb[k]) for k in export)
    recs = read_log(run / "log.jsonl")
    iters = [r for r in recs if r["type"] == "iter"]
    epochs = [r for r in recs if r["type"] == "epoch"]
    assert len(iters) == 2 * 3 and len(epochs) == 2
    for key in ("loss", "lr", "wd", "momentum", "teacher_temp", "teacher_entropy", "center_norm", "images_per_s"):
        assert all(math.isfinite(r[key]) for r in iters), key
    assert iters[0]["lr"] == 0.0  # warm-up starts at 0
    assert {"train_loss", "train_lr", "train_wd", "epoch"} <= set(epochs[0])
    assert [e["type"] for e in events].count("iter") == 6
    assert res.epochs_done == 2
    # the teacher moved away from its initial copy of the student, and the student differs from the teacher
    assert not torch.equal(ckpt["student"]["module.backbone.cls_token"], ckpt["teacher"]["backbone.cls_token"])
    # a second call resumes a finished run: nothing trains, nothing is overwritten
    before = (run / "checkpoint.pth").stat().st_mtime_ns
    train(cfg)
    assert (run / "checkpoint.pth").stat().st_mtime_ns == before
    assert any(r.get("event") == "resume" for r in read_log(run / "log.jsonl"))


def test_changed_config_is_saved_beside_not_over(tiny_cfg):
    cfg = tiny_cfg(epochs=1, warmup_epochs=0)
    train(cfg)
    run = Path(cfg.output_dir)
    original = (run / "config.yaml").read_text()
    train(tiny_cfg(epochs=2, warmup_epochs=0))  # continue the run for one more epoch
    assert (run / "config.yaml").read_text() == original
    assert len(list(run.glob("config.*.yaml"))) == 1
    assert safe_torch_load(run / "checkpoint.pth")["epoch"] == 2


def test_nonfinite_loss_stops_cleanly(tiny_cfg, monkeypatch):
    from dino_lib.losses import dino_loss

    cfg = tiny_cfg(epochs=2, warmup_epochs=0)
    original = dino_loss.DINOLoss.forward
    calls = {"n": 0}

    def flaky(self, s, t, epoch):
        calls["n"] += 1
        out = original(self, s, t, epoch)
        return out * float("nan") if calls["n"] == 5 else out

    monkeypatch.setattr(dino_loss.DINOLoss, "forward", flaky)
    with pytest.raises(NonFiniteLossError, match="iteration 4"):
        train(cfg)
    run = Path(cfg.output_dir)
    assert safe_torch_load(run / "checkpoint.pth")["epoch"] == 1  # last good checkpoint intact
    snaps = list((run / "nonfinite").glob("*.pth"))
    assert len(snaps) == 1 and len(safe_torch_load(snaps[0])["batch_indices"]) == 4


def test_data_errors_are_clear(tiny_cfg, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found"):
        train(tiny_cfg(data_path=str(empty)))
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (i * 50, 0, 0)).save(few / f"{i}.jpg")
    with pytest.raises(ValueError, match="3 images, fewer than one global batch of 4"):
        train(tiny_cfg(data_path=str(few)))
    (few / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (40, 40)).save(few / "3.jpg")
    from dino_lib.data.image_folder import CorruptImagesError

    with pytest.raises(CorruptImagesError, match="broken.jpg"):
        train(tiny_cfg(data_path=str(few)))
    res = train(
        tiny_cfg(
            data_path=str(few), skip_corrupt_images=True, epochs=1, warmup_epochs=0, output_dir=str(tmp_path / "skip")
        )
    )
    assert res.epochs_done == 1


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown architecture"):
        load_config(TrainConfig, None, {"arch": "vit_huge"})
    with pytest.raises(ConfigError, match="did you mean"):
        load_config(TrainConfig, None, {"out_dims": 3})
    with pytest.raises(ConfigError, match="warmup_teacher_temp_epochs"):
        load_config(TrainConfig, None, {"epochs": 5, "warmup_teacher_temp_epochs": 10, "warmup_epochs": 1})
    with pytest.raises(ConfigError, match="precision"):
        load_config(TrainConfig, None, {"precision": "fp8"})


def test_collapse_warnings():
    lnk = math.log(256)
    flat = [{"train_loss": lnk * 1.001, "teacher_entropy": lnk * 0.995}] * 3
    msgs = collapse_warnings(flat, lnk, patience=3)
    assert any("ln K" in m for m in msgs) and any("uniform" in m for m in msgs)
    assert collapse_warnings([{"train_loss": 3.0, "teacher_entropy": 0.001}] * 3, lnk)[0].startswith("teacher")
    assert collapse_warnings([{"train_loss": 3.0, "teacher_entropy": 2.0}] * 3, lnk) == []
    assert collapse_warnings(flat[:2], lnk, patience=3) == []


def test_log_reader_dedups_after_resume(tmp_path):
    lines = [
        {"type": "iter", "it": 0, "loss": 1.0},
        {"type": "iter", "it": 1, "loss": 2.0},
        {"type": "event", "event": "resume"},
        {"type": "iter", "it": 1, "loss": 3.0},
    ]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"partial')
    recs = read_log(tmp_path / "log.jsonl")
    assert [r.get("loss") for r in recs if r["type"] == "iter"] == [1.0, 3.0]


def test_vit_bf16_autocast(tiny_cfg):
    res = train(tiny_cfg(precision="bf16", epochs=1, warmup_epochs=0, max_images=8))
    assert math.isfinite(res.last_epoch["train_loss"])
    assert safe_torch_load(res.checkpoint)["teacher"]["backbone.cls_token"].dtype == torch.float32


def test_resnet_with_bn_head_and_lars(tiny_cfg):
    cfg = tiny_cfg(
        arch="resnet18",
        arch_kwargs={},
        use_bn_in_head=True,
        optimizer="lars",
        precision="fp32",
        epochs=1,
        warmup_epochs=0,
        max_images=8,
    )
    res = train(cfg)
    export = safe_torch_load(res.teacher_export)
    assert not any(k.startswith("fc.") for k in export)
    build_backbone("resnet18").load_state_dict(export, strict=True)
    ckpt = safe_torch_load(res.checkpoint)
    assert "head.mlp.1.running_mean" in ckpt["teacher"]  # BatchNorm in the head
    assert math.isfinite(res.last_epoch["train_loss"])


def test_teacher_gets_no_drop_path_and_student_does(tiny_cfg):
    from dino_lib.distributed import DistInfo
    from dino_lib.train.setup import build_run

    parts = build_run(tiny_cfg(drop_path_rate=0.2), DistInfo(), torch.device("cpu"))
    s_rates = [float(getattr(b.drop_path1, "drop_prob", 0.0)) for b in parts.student.backbone.blocks]
    t_rates = [float(getattr(b.drop_path1, "drop_prob", 0.0)) for b in parts.teacher.backbone.blocks]
    assert max(s_rates) > 0 and max(t_rates) == 0
    assert all(not p.requires_grad for p in parts.teacher.parameters())
    for (n, p), (_, q) in zip(parts.student.named_parameters(), parts.teacher.named_parameters()):
        assert torch.equal(p, q), n  # the teacher starts as a copy of the student


def test_knn_monitor_logs_the_initialisation_once(tiny_cfg):
    """With the k-NN monitor on, a fresh run logs the k-NN of its initial weights before training (teacher = student
    there), then one k-NN per epoch; resuming the finished run does not log a second initial k-NN."""
    cfg = tiny_cfg(epochs=1, knn_every=1, knn_data_path="sample:labelled", knn_resize=40, knn_crop=32)
    records = []
    train(cfg, callback=records.append, callbacks=default_callbacks(cfg))
    kinds = [r.get("event", r["type"]) for r in records if r.get("event") != "start" and r["type"] != "iter"]
    assert kinds[0] == "knn_init" and kinds.count("knn_init") == 1
    init = records[[r.get("event") for r in records].index("knn_init")]
    assert init["knn_teacher_top1"] == init["knn_student_top1"]
    assert 0.0 <= init["knn_teacher_top1"] <= 100.0
    assert "knn_teacher_top1" in next(r for r in records if r["type"] == "epoch")
    again = []
    train(cfg, callback=again.append, callbacks=default_callbacks(cfg))
    assert not [r for r in again if r.get("event") == "knn_init"]
