"""The training-task registry: ``images`` built in, other tasks registered by the packages that define them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from dino_lib.train.tasks import TASKS, Task, build_image_task, build_task, register_task

REPO = Path(__file__).resolve().parents[2]


def test_images_is_registered_by_training_itself():
    assert TASKS["images"] is build_image_task


def test_register_and_build_a_task(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("dino_lib.train.tasks.TASKS", dict(TASKS))
    task = Task(dataset=[], collate_fn=None, student_backbone=None, teacher_backbone=None, embed_dim=8,  # type: ignore[arg-type]
                n_global_crops=2, n_local_crops=0)  # fmt: skip

    def builder(cfg):
        return task

    assert register_task("toy", builder) is builder
    assert register_task("toy", builder) is builder  # re-importing a module registers the same builder again
    assert build_task(SimpleNamespace(task="toy")) is task  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_task("toy", lambda cfg: task)


def test_a_task_without_two_global_crops_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("dino_lib.train.tasks.TASKS", dict(TASKS))
    register_task("one_crop", lambda cfg: Task([], None, None, None, 8, 1, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly 2 global crops, found 1"):
        build_task(SimpleNamespace(task="one_crop"))  # type: ignore[arg-type]


def test_unknown_task_lists_the_registered_ones(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("dino_lib.train.tasks.TASKS", {"images": build_image_task})
    with pytest.raises(ValueError, match=r"unknown task 'imgaes'; registered tasks: images$"):
        build_task(SimpleNamespace(task="imgaes"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown task 'regions' \(import dino_lib.hierarchical first"):
        build_task(SimpleNamespace(task="regions"))  # type: ignore[arg-type]


def test_importing_hierarchical_registers_regions_and_training_does_not_import_it():
    code = (
        "import sys, dino_lib.train.tasks as t, dino_lib.train.loop\n"
        "assert 'regions' not in t.TASKS and 'dino_lib.hierarchical' not in sys.modules\n"
        "import dino_lib.hierarchical\n"
        "from dino_lib.hierarchical.region_task import build_region_task\n"
        "assert t.TASKS['regions'] is build_region_task\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("entry", ["dino_lib.train.__main__", "dino_lib.launch"])
def test_training_entry_points_register_regions(entry: str):
    code = f"import {entry}, dino_lib.train.tasks as t\nassert 'regions' in t.TASKS\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
