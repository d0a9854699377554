"""params/: one folder per notebook, each file a delta over the config defaults that still resolves to the recipe.

``params_resolved.json`` holds the fully resolved config of every file as it was when the files were reduced to
deltas, with keys added later at their defaults and the unified ``precision``. A change of a library default that would
silently change a published recipe fails here; update the file that should keep its value, or the snapshot when
the recipe really changes.
"""

from __future__ import annotations

import dataclasses
import json
import typing
import warnings
from pathlib import Path

import pytest

from dino_lib.config import _check_value, load_config, read_yaml, to_dict
from dino_lib.notebook import NOTEBOOK_CONFIGS, config_class

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params"
FILES = sorted(PARAMS.glob("*/*.yaml"))
IDS = [f"{p.parent.name}/{p.name}" for p in FILES]
SNAPSHOT = json.loads((Path(__file__).parent / "params_resolved.json").read_text())
# kept even at its default: the multi-config command lines (dino_lib.features, dino_lib.attention) route on it
ROUTING_KEYS = {"task"}


def test_one_folder_per_notebook():
    folders = sorted(p.name for p in PARAMS.iterdir() if p.is_dir())
    notebooks = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    assert folders == notebooks == sorted(NOTEBOOK_CONFIGS)
    assert sorted(IDS) == sorted(SNAPSHOT), "a parameter file was added or removed: update params_resolved.json"


def _default(cls: type, name: str) -> typing.Any:
    fld = {f.name: f for f in dataclasses.fields(cls)}[name]
    return fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()  # type: ignore[misc]


def _restated(cls: type, data: dict, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            out += _restated(hints[key], value, f"{prefix}{key}.")
        elif key not in ROUTING_KEYS and _check_value(value, hints[key], key) == _default(cls, key):
            out.append(prefix + key)
    return out


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_file_states_only_what_differs_from_the_defaults(path: Path):
    cls = config_class(path.parent.name)
    restated = _restated(cls, read_yaml(path))
    assert not restated, f"{path.relative_to(REPO)} restates defaults of {cls.__name__}: {restated}; delete them"


ROUTED = [p for p in FILES if p.parent.name in ("extract_region_features", "hipt_heatmaps")]


@pytest.mark.parametrize("path", ROUTED, ids=[f"{p.parent.name}/{p.name}" for p in ROUTED])
def test_multi_task_files_name_their_task(path: Path):
    """``python -m dino_lib.features`` / ``dino_lib.attention`` pick the config by ``task`` before validating."""
    from dino_lib.cli import requested_task

    assert requested_task(["--config", str(path)]) == load_config(config_class(path.parent.name), path).task


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_file_resolves_to_the_recorded_recipe(path: Path):
    resolved = to_dict(load_config(config_class(path.parent.name), path))
    expected = SNAPSHOT[f"{path.parent.name}/{path.name}"]
    diff = {
        k: (resolved.get(k), expected.get(k))
        for k in set(resolved) | set(expected)
        if resolved.get(k) != expected.get(k)
    }
    assert not diff, f"{path.relative_to(REPO)} now resolves differently (now, recorded): {diff}"


def test_old_folder_names_still_load_with_a_deprecation_message():
    old = PARAMS / "attention" / "dino_vits8.yaml"
    with pytest.warns(DeprecationWarning, match="renamed params/attention_maps/"):
        cfg = load_config(config_class("attention_maps"), old)
    assert cfg.patch_size == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_yaml(PARAMS / "propagate_segmentation" / "ci.yaml")  # the new names warn about nothing
