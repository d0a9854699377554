"""Run folders: checked before work, locked for one run, stale temp files removed, failed starts leave nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dino_lib.config import save_run_config
from dino_lib.utils.rundir import LOCK_NAME, OutputDirError, RunFolder, check_output_dir, mark_started


def test_output_dir_that_is_a_file_or_not_writable_is_refused(tmp_path):
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(OutputDirError, match=r"output_dir: .*/f is a file"):
        check_output_dir(afile)
    with pytest.raises(OutputDirError, match=r"output_dir: .*/f/sub cannot be created: .*/f is a file"):
        check_output_dir(afile / "sub")
    with pytest.raises(OutputDirError, match=r"not writable"):
        check_output_dir("/proc/dino_lib_out/run")  # a real write probe: refused even for root
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_failed_start_leaves_nothing_and_started_run_keeps_outputs(tmp_path):
    out = tmp_path / "a" / "run"
    with pytest.raises(ValueError), RunFolder(out):
        (out / "partial.txt").write_text("x")
        raise ValueError("bad input")
    assert not (tmp_path / "a").exists()  # the folders this run created are gone too

    with pytest.raises(ValueError), RunFolder(out):
        save_run_config({"a": 1}, out)  # the start of the real work
        (out / "checkpoint.pth").write_text("x")
        raise ValueError("failed later")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pth", "config.yaml"]


def test_failed_rerun_never_touches_a_good_run(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out):
        save_run_config({"epochs": 1}, out)
    good = (out / "config.yaml").read_text()
    with pytest.raises(ValueError), RunFolder(out):
        (out / "log.jsonl").write_text("x")
        raise ValueError("bad input")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"] and (out / "config.yaml").read_text() == good


def test_second_run_on_a_folder_is_refused_and_names_the_first(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with RunFolder(out):
        assert f"pid={os.getpid()}" in (out / LOCK_NAME).read_text()
        second = RunFolder(out)
        acquire = RunFolder._acquire

        def first_run_writes_meanwhile(self):
            (out / "written_by_the_first_run.txt").write_text("x")  # after the second run listed the folder
            acquire(self)

        monkeypatch.setattr(RunFolder, "_acquire", first_run_writes_meanwhile)
        with pytest.raises(OutputDirError, match=rf"in use by another run \(host=.*pid={os.getpid()}"), second:
            pass
        assert (out / LOCK_NAME).is_file()  # the refused run did not remove the holder's lock...
        assert (out / "written_by_the_first_run.txt").is_file()  # ...nor its outputs
    assert not (out / LOCK_NAME).exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(f"host=old\npid={dead.stdout.strip()}\n")  # left by a kill -9
    with RunFolder(out):
        assert f"pid={os.getpid()}" in (out / LOCK_NAME).read_text()
    assert "no longer running" in caplog.text and f"pid={dead.stdout.strip()}" in caplog.text


def test_stale_checkpoint_temp_files_are_removed_at_start(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pth.k2j4h8.tmp"
    stale.write_bytes(b"\0" * 1024)
    keep = out / "checkpoint.pth"
    keep.write_text("x")
    with RunFolder(out):
        assert not stale.exists() and keep.exists()
    assert "interrupted write" in caplog.text


def test_mark_started_only_affects_its_own_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with pytest.raises(ValueError), RunFolder(a), RunFolder(b):
        (a / "x").write_text("1")
        (b / "y").write_text("1")
        mark_started(a)
        raise ValueError("boom")
    assert (a / "x").is_file() and not b.exists()


def test_unlocked_guard_of_another_rank_never_removes_anything(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError), RunFolder(out, lock=False):
        out.mkdir()
        (out / "rank0_output.pt").write_text("x")
        raise ValueError("rank 1 failed")
    assert (out / "rank0_output.pt").is_file()
