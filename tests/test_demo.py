"""The demo pipeline covers every notebook, in an order where each chained artefact comes from an earlier step."""

from __future__ import annotations

import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# The runner is a repository tool (tools/demo/run.py), not part of the installed package: read its definitions.
_RUNNER = runpy.run_path(str(REPO / "tools" / "demo" / "run.py"), run_name="demo_run")
DEMO_STEPS, step_parameters = _RUNNER["DEMO_STEPS"], _RUNNER["step_parameters"]


def test_runner_and_tests_agree_on_the_repository_root():
    assert _RUNNER["REPO"] == REPO


def test_demo_runs_every_notebook_once():
    names = [s.notebook for s in DEMO_STEPS]
    assert len(names) == len(set(names))
    on_disk = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    assert sorted(names) == on_disk


def test_chained_parameters_exist_and_come_from_earlier_steps(tmp_path: Path):
    seen: list[str] = []
    for step in DEMO_STEPS:
        params = step_parameters(step, tmp_path)  # raises when a chained key is not a notebook parameter
        assert params["output_dir"] == str(tmp_path / step.notebook)
        for key, template in step.chained.items():
            if "{out}" not in template:  # a constant, e.g. arch: auto to read the architecture from the checkpoint
                continue
            producer = template.split("/")[1]
            assert producer in seen, f"{step.notebook}.{key} uses {producer}, which runs later or not at all"
            assert params[key].startswith(str(tmp_path))
        seen.append(step.notebook)


def test_demo_pretrains_with_the_small_data_recipe_and_later_steps_match_its_teacher(tmp_path: Path):
    names = {s.notebook for s in DEMO_STEPS}
    overrides = sorted(p.stem for p in (REPO / "tools" / "demo").glob("*.yaml"))
    assert overrides and set(overrides) <= names  # every override file belongs to a demo step
    params = {s.notebook: step_parameters(s, tmp_path) for s in DEMO_STEPS}
    pretrain = params["pretrain"]
    assert pretrain["data_path"] == "sample:digits/train" and pretrain["max_images"] is None
    assert pretrain["teacher_temp"] < 0.04 and pretrain["out_dim"] < 65536  # the small-data recipe, not ci.yaml's
    patch, depth = pretrain["patch_size"], pretrain["arch_kwargs"]["depth"]
    assert (params["attention_maps"]["patch_size"], params["attention_maps"]["depth"]) == (patch, depth)
    propagate = params["propagate_segmentation"]
    assert (propagate["patch_size"], propagate["model_kwargs"]["depth"]) == (patch, depth)
    assert params["evaluate"]["data_path"] == pretrain["knn_data_path"]
