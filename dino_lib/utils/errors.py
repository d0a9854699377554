"""The error type of invalid user input, shared by the configuration and the run-folder checks.

:class:`ConfigError` is defined here, below every other module, so that small utilities (the run folder's lock,
for instance) can raise it without importing the configuration layer; :mod:`dino_lib.config` re-exports it and is
where users meet it.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key, the allowed values and the fix.

    ``key`` is the dotted key at fault when one is (used to say whether the YAML file or the command line set it).
    """

    key: str | None = None
