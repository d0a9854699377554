"""Progress bars: hidden on request (other ranks), else tqdm defaults, so TQDM_DISABLE still switches them off."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from dino_lib.utils.progress import progress_bar


def test_enabled_bar_counts(monkeypatch):
    out = io.StringIO()
    items = list(progress_bar(range(5), desc="frames", file=out, disable=False))
    assert items == list(range(5)) and "frames" in out.getvalue() and "5/5" in out.getvalue()


def test_tqdm_disable_switches_enabled_bars_off():
    # tqdm reads TQDM_* when it is imported, so the check runs in a fresh interpreter
    code = "from dino_lib.utils.progress import progress_bar; list(progress_bar(range(3), desc='frames'))"
    for value, shown in (("1", False), (None, True)):
        env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
        if value is not None:
            env["TQDM_DISABLE"] = value
        err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stderr
        assert ("3/3" in err) is shown, (value, err)


def test_disabled_bar_prints_nothing(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    out = io.StringIO()
    assert list(progress_bar(range(3), enabled=False, file=out)) == [0, 1, 2] and out.getvalue() == ""
