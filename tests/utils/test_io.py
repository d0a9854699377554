"""Atomic writes and safe loading: no half-written outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from dino_lib.utils.io import atomic_torch_save, atomic_write, atomic_write_bytes, atomic_write_text, safe_torch_load


def test_atomic_write_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "hello")
    atomic_write_bytes(tmp_path / "sub" / "b.bin", b"\x00\x01")
    assert target.read_text() == "hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.bin", "out.txt"]


def test_failing_writer_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half-writ")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_torch_save_and_safe_load_legacy_types(tmp_path: Path) -> None:
    obj = {
        "w": torch.arange(3.0),
        "epoch": np.int64(4),
        "loss": np.float64(1.5),
        "lr": np.float32(0.1),
        "arr": np.arange(3),
        "args": argparse.Namespace(arch="vit_small"),
    }
    atomic_torch_save(obj, tmp_path / "c.pth")
    back = safe_torch_load(tmp_path / "c.pth")
    assert torch.equal(back["w"], obj["w"]) and back["epoch"] == 4 and back["loss"] == 1.5
    assert back["args"].arch == "vit_small" and list(back["arr"]) == [0, 1, 2]


def test_safe_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        safe_torch_load(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        safe_torch_load(tmp_path / "junk.pth")


def test_atomic_write_gives_the_usual_file_mode(tmp_path: Path) -> None:
    """mkstemp files are owner-only; outputs must get the mode a plain open() would give."""
    atomic_write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    assert (tmp_path / "atomic.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode
