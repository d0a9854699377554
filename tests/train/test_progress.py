"""Per-epoch lines and the ETA built from the trainer's log records."""

from __future__ import annotations

from dino_lib.train.progress import EpochLines, epoch_line, format_duration


def test_format_duration():
    assert [format_duration(s) for s in (9.4, 75, 3725)] == ["9s", "1m15s", "1h02m"]


def test_epoch_line_has_loss_lr_entropy_knn_speed_and_eta():
    rec = {"type": "epoch", "epoch": 0, "train_loss": 5.25, "train_lr": 1e-4, "teacher_entropy": 3.1, "ln_k": 5.5}
    rec.update(knn_teacher_top1=41.25, knn_student_top1=39.5, knn_teacher_top5=80.0, images_per_s=12.5)
    line = epoch_line(rec, epochs=4, eta_s=90)
    assert line.startswith("epoch 1/4, loss 5.2500, lr 0.0001, teacher entropy 3.100 (ln K 5.50)")
    assert "k-NN top-1 student 39.5% / teacher 41.2%" in line and "12.5 img/s" in line and line.endswith("ETA 1m30s")
    assert "k-NN" not in epoch_line({"epoch": 0, "train_loss": 1.0}, 1, None)


def test_eta_extrapolates_iterations_since_start():
    now = [100.0]
    lines: list[str] = []
    report = EpochLines(emit=lines.append, clock=lambda: now[0])
    # a resumed run: 10 iterations per epoch, 4 epochs, restarted at iteration 10 (epoch 2)
    report({"type": "event", "event": "start", "total_iters": 40, "start_it": 10, "niter_per_ep": 10})
    now[0] = 120.0  # 10 iterations in 20 s -> 2 s/iteration, 20 iterations left
    report({"type": "epoch", "epoch": 1, "train_loss": 4.0})
    assert lines == ["epoch 2/4, loss 4.0000, ETA 40s"]
