"""Notebook parameters -> a validated config: the one helper every notebook calls after its ``parameters`` cell.

papermill injects parameters as plain assignments and only *warns* about names the notebook does not have
("Passed unknown parameter"), so a misspelled ``-p epoch 3`` would otherwise train with the default. Here the
names assigned in the parameters cell and in papermill's injected cell (both start with a ``# Parameters``
comment) are read back from the kernel's input history, and every one of them must be a key of the config: an
unknown name is a :class:`~dino_lib.config.ConfigError` with a "did you mean" suggestion. Keys the parameters cell
does not expose are set through the ``overrides`` dict parameter (dotted keys allowed: ``{"slurm.nodes": 2}``) or
injected directly by papermill (``-p weight_decay 0.05``, ``-f params/<notebook>/<set>.yaml``); both go through
the same validation as a YAML file on the command line.

A papermill run is described completely by what papermill injects (``-f FILE``, ``-p key value``), exactly like a
command line (``--config FILE key=value``): keys not injected take the library defaults, so the files of
``params/<notebook>/`` (which list only what differs from the defaults) mean the same in both places. A run
without injected parameters (JupyterLab, nbval) uses the parameters cell, whose values are ``ci.yaml``.

Outside a kernel (tests, scripts) the plain-data globals of the namespace are taken as the parameters.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dino_lib.cli import notebook_errors
from dino_lib.config import ConfigError, from_dict

__all__ = [
    "DEMO_DIR_ENV",
    "DEMO_WEIGHTS",
    "NOTEBOOK_CONFIGS",
    "config_class",
    "demo_dir",
    "notebook_config",
    "parameter_names",
    "resolve_demo_weights",
    "setup_notebook_logging",
]

#: The config dataclass of each notebook (``notebooks/<name>.ipynb``, ``params/<name>/``), as "module:Class".
NOTEBOOK_CONFIGS = {
    "pretrain": "dino_lib.train.config:TrainConfig",
    "evaluate": "dino_lib.eval.config:EvalConfig",
    "attention_maps": "dino_lib.attention.config:AttentionConfig",
    "propagate_segmentation": "dino_lib.propagation.config:PropagationConfig",
    "segmentation_metrics": "dino_lib.metrics.config:MetricsConfig",
    "extract_region_features": "dino_lib.hierarchical.extraction:RegionExtractionConfig",
    "region_pretrain": "dino_lib.train.config:TrainConfig",
    "hipt_heatmaps": "dino_lib.hierarchical.heatmaps_run:HIPTHeatmapConfig",
}

#: ``'demo'`` as one of these parameters stands for this file of the demo's output folder (``make demo``).
DEMO_WEIGHTS = {
    "pretrained_weights": "pretrain/teacher_backbone.pth",
    "region_weights": "region_pretrain/teacher_backbone.pth",
}
DEMO_DIR_ENV = "DINO_DEMO_DIR"
REPO = Path(__file__).resolve().parent.parent

logger = logging.getLogger(__name__)

T = TypeVar("T")

PARAMETERS_MARKER = "# parameters"
PAPERMILL_HEADER = "# Parameters"
OVERRIDES = "overrides"
_PLAIN = (type(None), bool, int, float, str, list, tuple, dict)
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


def config_class(notebook: str) -> type:
    """The config dataclass of a notebook, by the notebook's name."""
    import importlib

    if notebook not in NOTEBOOK_CONFIGS:
        raise KeyError(f"no notebook named '{notebook}'; notebooks: {', '.join(NOTEBOOK_CONFIGS)}")
    module, name = NOTEBOOK_CONFIGS[notebook].split(":")
    return getattr(importlib.import_module(module), name)


def _is_parameters_cell(source: str) -> bool:
    first = source.lstrip().split("\n", 1)[0].strip().lower()
    return first.startswith(PARAMETERS_MARKER)


def _assigned_names(source: str) -> list[str]:
    """Top-level names assigned (``x = ...`` or ``x: T = ...``) in a cell's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def _is_injected(source: str) -> bool:
    return source.lstrip().split("\n", 1)[0].strip() == PAPERMILL_HEADER


def parameter_names(history: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """Names assigned by the latest run of the parameters cell, and by papermill's injected cell (if any).

    ``history`` is the kernel's input history (``In``), whose last entry is the cell being run. Walking back from
    the previous entry, the latest cell starting with ``# Parameters`` is taken together with the parameter cells
    run directly before it (papermill runs the notebook's cell, then its injected one, whose first line is exactly
    ``# Parameters``). Returns ``(all names, injected names)``, or ``None`` when no such cell was run.
    """
    cells = list(history[:-1])
    idx = next((i for i in range(len(cells) - 1, -1, -1) if _is_parameters_cell(cells[i])), None)
    if idx is None:
        return None
    start = idx
    while start > 0 and _is_parameters_cell(cells[start - 1]):
        start -= 1
    names: list[str] = []
    injected: list[str] = []
    for source in cells[start : idx + 1]:
        assigned = _assigned_names(source)
        names += [n for n in assigned if n not in names]
        if _is_injected(source):
            injected += [n for n in assigned if n not in injected]
    return names, injected


def _plain_globals(namespace: Mapping[str, Any]) -> list[str]:
    return [
        k
        for k, v in namespace.items()
        if not k.startswith("_") and k not in _IPYTHON_NAMES and isinstance(v, _PLAIN) and not isinstance(v, type)
    ]


def _expand(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"slurm.nodes": 2, "lr": 1e-3}`` -> ``{"slurm": {"nodes": 2}, "lr": 1e-3}`` (dotted keys nest)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        node = out
        *parents, last = str(key).split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"overrides: '{key}' nests under a key that already has a plain value")
        node[last] = value
    return out


def notebook_config(
    cls: type[T],
    namespace: Mapping[str, Any],
    *,
    history: Sequence[str] | None = None,
    logging_level: int | None = logging.INFO,
) -> T:
    """The validated ``cls`` built from a notebook's parameters (call it with ``globals()``).

    In IPython, config and input errors of the rest of the notebook are then shown as one message, as on the
    command line (:func:`dino_lib.cli.notebook_errors`; the cell still fails).

    Args:
        cls: the config dataclass of the notebook's task.
        namespace: the notebook's globals.
        history: the kernel's input history; default ``namespace["In"]`` when present.
        logging_level: level of :func:`setup_notebook_logging` (INFO to stdout; ``None`` leaves logging alone).

    Raises:
        ConfigError: a parameter is not a key of ``cls`` (with a suggestion), or a value is invalid.
    """
    notebook_errors()
    if logging_level is not None:
        setup_notebook_logging(logging_level)
    if history is None:
        history = namespace.get("In") if isinstance(namespace.get("In"), list) else None
    found = parameter_names(history) if history else None
    names, injected = found if found is not None else (_plain_globals(namespace), [])
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    _check_names(cls.__name__, names, fields)
    if injected:
        # papermill run: what was injected describes the run completely, like a command line; keys not given take
        # the library defaults, not the notebook's tiny ones (otherwise a params/ file, which lists only what
        # differs from the defaults, would be mixed with the CI values of the parameters cell).
        logger.info(
            "papermill parameters %s; every other key takes its library default (pass -f params/<notebook>/ci.yaml "
            "first to start from the notebook's tiny CPU values)",
            sorted(injected),
        )
        names = injected
    values = {n: namespace[n] for n in names if n in fields and n in namespace}
    extra = namespace.get(OVERRIDES) if OVERRIDES in names or not found else None
    if extra:
        values.update(_overrides(extra, names))
    values = {k: resolve_demo_weights(k, v) for k, v in values.items()}
    return from_dict(cls, values, source="notebook parameters")


def _check_names(config_name: str, names: Sequence[str], fields: Sequence[str]) -> None:
    """Every parameter name must be a key of the config (or the ``overrides`` dict), with a suggestion if not."""
    unknown = [n for n in names if n not in fields and n != OVERRIDES]
    if not unknown:
        return
    msgs = []
    for name in unknown:
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
        msgs.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise ConfigError(
        f"unknown notebook parameter{'s' if len(msgs) > 1 else ''} {', '.join(msgs)}; {config_name} keys: "
        f"{', '.join(fields)}. Keys the parameters cell does not show can be passed as parameters too, or in "
        f"the '{OVERRIDES}' dict"
    )


def _overrides(extra: Any, names: Sequence[str]) -> dict[str, Any]:
    """The ``overrides`` dict parameter as nested values; a key set there and as a parameter is an error."""
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{OVERRIDES}: expected a dict of config keys to values, found {extra!r}")
    nested = _expand(extra)
    both = sorted(set(nested) & {n for n in names if n != OVERRIDES})
    if both:
        raise ConfigError(
            f"{', '.join(both)} set both as a parameter and in '{OVERRIDES}'; set each key in one place only"
        )
    return nested


def demo_dir() -> Path:
    """Where ``make demo`` wrote its outputs: ``$DINO_DEMO_DIR`` when set, else ``<repository>/runs/demo``."""
    return Path(os.environ.get(DEMO_DIR_ENV) or REPO / "runs" / "demo")


def resolve_demo_weights(key: str, value: Any) -> Any:
    """``'demo'`` as ``pretrained_weights`` / ``region_weights`` -> the teacher that ``make demo`` trained.

    Lets a notebook opened from ``notebooks/`` use the demo's teacher without typing a path; other values pass.
    """
    if value != "demo" or key not in DEMO_WEIGHTS:
        return value
    path = demo_dir() / DEMO_WEIGHTS[key]
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}: 'demo' stands for {path}, which does not exist; run `make demo` first (or set "
            f"{DEMO_DIR_ENV} to the folder given to `python tools/demo/run.py --out`), or give a checkpoint path"
        )
    return str(path)


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def setup_notebook_logging(level: int = logging.INFO) -> None:
    """Route log records below WARNING to stdout (Jupyter shows stderr as red boxes) and warnings to stderr."""
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_BelowWarning())
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    fmt = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    for handler in (out, err):
        handler.setFormatter(fmt)
    logging.basicConfig(level=level, handlers=[out, err], force=True)
