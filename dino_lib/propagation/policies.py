"""Keyframe policies: which frames anchor the propagation and which share a queue.

* ``first``: frame 0 is the only anchor (DAVIS);
* ``chunks``: independent chunks of ``refresh_label_interval`` frames, each anchored on its own label frame with a
  fresh queue (the driving-run protocol);
* ``continuous``: one queue through the whole video; every ``refresh_label_interval``-th frame is added as an extra
  anchor (optionally only the last ``max_anchors`` are kept).
"""

from __future__ import annotations

from dino_lib.propagation.config import PropagationConfig

__all__ = ["keyframes", "segments", "source_keyframes"]


def keyframes(cfg: PropagationConfig, n: int) -> list[int]:
    if cfg.resolved_policy == "first":
        return [0]
    return list(range(0, n, cfg.refresh_label_interval))


def segments(cfg: PropagationConfig, n: int) -> list[range]:
    """Frame ranges that share one context queue (independent chunks, or the whole video)."""
    if cfg.resolved_policy == "chunks":
        return [range(s, min(s + cfg.refresh_label_interval, n)) for s in range(0, n, cfg.refresh_label_interval)]
    return [range(0, n)]


def source_keyframes(cfg: PropagationConfig, n: int) -> list[int]:
    """For each frame, the index of the keyframe it is propagated from (the latest anchor before it)."""
    keys = set(keyframes(cfg, n))
    out: list[int] = []
    for seg in segments(cfg, n):
        anchor = seg.start
        for i in seg:
            anchor = i if i in keys else anchor
            out.append(anchor)
    return out
