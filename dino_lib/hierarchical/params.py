"""Notebook glue: build a config dataclass from the notebook's parameter variables (validated, style.md §5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from dino_lib.config import from_dict

__all__ = ["config_from_namespace"]

T = TypeVar("T")


def config_from_namespace(cls: type[T], namespace: Mapping[str, Any]) -> T:
    """``cls`` from the entries of ``namespace`` (e.g. ``globals()``) named like its fields; others are ignored."""
    from dino_lib.cli import notebook_errors

    notebook_errors()  # config and input errors in the notebook: one message, as on the command line
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return from_dict(cls, {k: v for k, v in namespace.items() if k in names}, source="notebook parameters")
