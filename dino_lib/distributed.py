"""Process-group helpers, kept importable under their old name; they live in :mod:`dino_lib.runtime`."""

from __future__ import annotations

from dino_lib import runtime
from dino_lib.runtime import *  # noqa: F403 - every public name of the runtime, under this old module name
from dino_lib.runtime import env_rank as launch_rank

__all__ = [*runtime.__all__, "launch_rank"]
