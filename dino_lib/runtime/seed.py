"""Seeding: one function for Python, NumPy and torch, and a scoped seed that leaves the global RNG alone."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["seed_everything", "seeded"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch with the same seed on every rank, as the reference trainer does."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. a random initialisation) with torch seeded to ``seed``, restoring the RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
