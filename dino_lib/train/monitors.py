"""``RUN_DIR/log.jsonl`` writing/reading and collapse diagnostics.

Records are JSON objects, one per line, with ``"type"``: ``"iter"`` (every ``log_every`` iterations), ``"epoch"``
(faithful keys ``train_loss``, ``train_lr``, ``train_wd``, ``epoch`` plus monitors), ``"event"`` (start, resume,
warnings, end). The file is only appended to; after a resume, :func:`read_log` keeps the latest record for each
iteration/epoch so curves have no duplicates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["JsonlLogger", "read_log", "log_frames", "collapse_warnings"]


class JsonlLogger:
    """Append JSON lines (flushed immediately so a notebook can follow the run); a no-op when ``enabled`` is False."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(clean) + "\n")
            fh.flush()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All records of a log.jsonl, de-duplicated after resumes (a later record of the same step wins).

    A partially written last line (the run is still writing) is ignored.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records: list[dict[str, Any]] = []
    index: dict[tuple[str, int], int] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = rec.get("type")
        key_val = rec.get("it") if kind == "iter" else rec.get("epoch") if kind == "epoch" else None
        if key_val is not None:
            key = (kind, int(key_val))
            if key in index:
                records[index[key]] = rec
                continue
            index[key] = len(records)
        records.append(rec)
    return records


def log_frames(path: str | Path) -> tuple[Any, Any]:
    """``(iterations, epochs)`` pandas DataFrames from a log.jsonl (empty frames when absent)."""
    import pandas as pd

    recs = read_log(path)
    iters = pd.DataFrame([r for r in recs if r.get("type") == "iter"])
    epochs = pd.DataFrame([r for r in recs if r.get("type") == "epoch"])
    if len(iters):
        iters = iters.sort_values("it").reset_index(drop=True)
    if len(epochs):
        epochs = epochs.sort_values("epoch").reset_index(drop=True)
    return iters, epochs


def collapse_warnings(
    epoch_records: Iterable[dict[str, Any]], ln_k: float, patience: int = 3, tol: float = 0.01
) -> list[str]:
    """Signs of collapse over the last ``patience`` epochs.

    * loss within ``tol`` (relative) of ln K: uniform teacher targets;
    * teacher entropy near 0 (< 1 % of ln K): one-hot collapse (every image -> the same prototype);
    * teacher entropy near ln K (> 99 %): uniform collapse.
    """
    recs = [r for r in epoch_records if r.get("train_loss") is not None][-patience:]
    if len(recs) < patience:
        return []
    out = []
    if all(abs(r["train_loss"] - ln_k) <= tol * ln_k for r in recs):
        out.append(
            f"loss flat at ln K = {ln_k:.3f} for {patience} epochs (uniform teacher targets): lower the teacher "
            "temperature, keep norm_last_layer true, increase freeze_last_layer, or use a smaller out_dim"
        )
    ents = [r.get("teacher_entropy") for r in recs]
    if all(e is not None for e in ents):
        if all(e < 0.01 * ln_k for e in ents):
            out.append("teacher entropy near 0 (one-hot collapse): raise the center momentum effect or the temperature")
        elif all(e > 0.99 * ln_k for e in ents):
            out.append(f"teacher entropy at its maximum ln K = {ln_k:.3f} (uniform collapse): lower the teacher temp")
    return out
