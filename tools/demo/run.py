"""``make demo``: build the sample data, then run every notebook in pipeline order with its ``ci.yaml``.

Steps with a ``tools/demo/<notebook>.yaml`` take those values over their ``ci.yaml`` ones: the demo pretrains with
the small-data recipe on scikit-learn's handwritten digits for a few minutes, so that the later steps show what a
model that learned looks like (k-NN far above random weights, attention on the strokes).

Each step runs through papermill with ``params/<notebook>/ci.yaml`` plus ``output_dir=<out>/<notebook>`` and the
artefacts of earlier steps (the pretrained teacher, extracted region tensors, propagated labels), and writes the
executed notebook to ``<out>/<notebook>.ipynb``. Figures and files land in ``<out>/<notebook>/``.

Usage (from the repository root, after ``pip install -e .``; ``make demo`` does both)::

    python tools/demo/run.py --out runs/demo [--only pretrain attention_maps] [--list]

Notebooks then reach the demo's teachers with ``pretrained_weights = 'demo'`` (see
:func:`dino_lib.notebook.resolve_demo_weights`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]  # tools/demo/run.py -> the repository root


@dataclasses.dataclass(frozen=True)
class DemoStep:
    """One notebook of the pipeline and the parameters it takes from earlier steps (``{out}`` = demo folder)."""

    notebook: str
    chained: dict[str, Any] = dataclasses.field(default_factory=dict)
    recipe: str | None = None  # a parameter set of params/<notebook>/ applied over ci.yaml, before the demo's


DEMO_STEPS: list[DemoStep] = [
    DemoStep("pretrain", recipe="small_data.yaml"),
    DemoStep("evaluate", {"pretrained_weights": "{out}/pretrain/teacher_backbone.pth", "arch": "auto"}),
    DemoStep("attention_maps", {"pretrained_weights": "{out}/pretrain/teacher_backbone.pth"}),
    DemoStep("propagate_segmentation", {"pretrained_weights": "{out}/pretrain/teacher_backbone.pth"}),
    DemoStep("segmentation_metrics", {"predictions": "{out}/propagate_segmentation"}),
    DemoStep("extract_region_features", {"pretrained_weights": "{out}/pretrain/teacher_backbone.pth"}),
    DemoStep("region_pretrain", {"data_path": "{out}/extract_region_features"}),
    DemoStep(
        "hipt_heatmaps",
        {
            "pretrained_weights": "{out}/pretrain/teacher_backbone.pth",
            "region_weights": "{out}/region_pretrain/teacher_backbone.pth",
        },
    ),
]


def step_parameters(step: DemoStep, out: Path) -> dict[str, Any]:
    """ci.yaml values updated by the step's recipe and ``tools/demo/<notebook>.yaml`` (when it has them), the
    step's output folder and the chained artefacts of earlier steps.

    ``tools/demo/<notebook>.yaml`` holds only what the demo changes: pretraining uses the small-data recipe long
    enough to learn (scikit-learn's digits), and the steps that read its teacher take its data and architecture.
    """
    from dino_lib.notebook import config_class

    ci = REPO / "params" / step.notebook / "ci.yaml"
    params = yaml.safe_load(ci.read_text()) or {}
    if step.recipe:  # a complete parameter set of the notebook (validated by the notebook like any other)
        params.update(yaml.safe_load(ci.with_name(step.recipe).read_text()) or {})
    keys = {f.name for f in dataclasses.fields(config_class(step.notebook))}
    demo = REPO / "tools" / "demo" / f"{step.notebook}.yaml"
    if demo.is_file():
        changes = yaml.safe_load(demo.read_text()) or {}
        unknown = sorted(set(changes) - keys)
        if unknown:
            raise KeyError(f"{demo}: keys {unknown} are not parameters of {step.notebook}")
        params.update(changes)
    params["output_dir"] = str(out / step.notebook)
    for key, value in step.chained.items():
        if key not in keys:
            raise KeyError(f"the demo chains '{key}' into {step.notebook}, but its config has no such key")
        params[key] = value.format(out=out)
    return params


def run_demo(out: Path, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the pipeline; returns one record per step (notebook, seconds, executed copy)."""
    import papermill

    from dino_lib.sample_data import ensure_sample_data

    out = out if out.is_absolute() else (Path.cwd() / out)
    out.mkdir(parents=True, exist_ok=True)
    paths = ensure_sample_data()
    logger.info("sample data ready under %s", paths.root)
    records = []
    for step in DEMO_STEPS:
        if only and step.notebook not in only:
            continue
        notebook = REPO / "notebooks" / f"{step.notebook}.ipynb"
        executed = out / f"{step.notebook}.ipynb"
        params = step_parameters(step, out)
        logger.info("running %s with %s", notebook.name, params)
        start = time.perf_counter()
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=params, kernel_name="python3", cwd=str(REPO), progress_bar=False
        )
        seconds = time.perf_counter() - start
        records.append({"notebook": step.notebook, "seconds": round(seconds, 1), "executed": str(executed)})
        print(f"[demo] {step.notebook:<26} {seconds:6.1f} s  -> {executed}", flush=True)
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="demo output folder")
    parser.add_argument("--only", nargs="*", default=None, help="run only these notebooks (pipeline order kept)")
    parser.add_argument("--list", action="store_true", help="list the steps and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.list:
        for step in DEMO_STEPS:
            print(step.notebook, step.chained)
        return
    records = run_demo(args.out, args.only)
    total = sum(r["seconds"] for r in records)
    print(f"[demo] {len(records)} notebooks in {total:.0f} s; executed copies and figures under {args.out}")


if __name__ == "__main__":
    main()
