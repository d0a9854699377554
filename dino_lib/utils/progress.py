"""Progress bars for every loop a user waits on (tqdm.auto: a widget in notebooks, text on a terminal).

``enabled=False`` (e.g. ranks other than 0) hides a bar; otherwise tqdm's own defaults apply, so the
``TQDM_DISABLE=1`` environment variable (set by ``make test`` and CI) still switches every bar off.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(iterable, **kwargs)``, hidden when ``enabled`` is False."""
    from tqdm.auto import tqdm

    if not enabled:
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
