"""Run ``dino_lib.train`` in a subprocess with an injected SIGKILL (used by test_resume.py).

Usage: ``python fault_runner.py CONFIG MODE ARG`` with MODE ``none``, ``kill_at_iter`` (ARG = global iteration:
killed right after that iteration's log record; with
``FAULT_RANK=r`` only rank r dies) or ``kill_in_save`` (ARG = n: killed half-way through writing the
n-th checkpoint file).
"""

from __future__ import annotations

import os
import signal
import sys

import torch


def main() -> None:
    config, mode, arg = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "kill_at_iter":
        from dino_lib.train import monitors

        original = monitors.JsonlLogger.write

        def write(self, record):
            original(self, record)
            only_rank = os.environ.get("FAULT_RANK")
            if only_rank is not None and os.environ.get("RANK", "0") != only_rank:
                return
            if record.get("type") == "iter" and record["it"] == arg:
                os.kill(os.getpid(), signal.SIGKILL)

        monitors.JsonlLogger.write = write
    elif mode == "kill_in_save":
        original_save = torch.save
        calls = {"n": 0}

        def save(obj, f, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == arg:
                original_save(obj, f, *args, **kwargs)
                with open(f, "rb+") as fh:  # leave a truncated temporary file behind, then die
                    fh.truncate(os.path.getsize(f) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            return original_save(obj, f, *args, **kwargs)

        torch.save = save
    from dino_lib.train.__main__ import main as train_main

    sys.exit(train_main(["--config", config]))


if __name__ == "__main__":
    main()
