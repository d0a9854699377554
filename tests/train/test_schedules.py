"""Schedules against an element-by-element re-derivation, quirks included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dino_lib.train import cosine_schedule, scaled_lr


def rederived(base, final, epochs, niter, warmup_epochs, start=0.0):
    w, total = warmup_epochs * niter, epochs * niter
    out = []
    for i in range(w):  # linspace with both end points
        out.append(start + (base - start) * (i / (w - 1) if w > 1 else 0.0))  # a 1-point linspace is its start
    n = total - w
    for j in range(n):
        out.append(final + 0.5 * (base - final) * (1 + math.cos(math.pi * j / n)))
    return np.array(out)


@pytest.mark.parametrize("epochs,niter,warmup", [(5, 3, 2), (10, 7, 0), (4, 1, 1), (3, 5, 3)])
def test_matches_rederivation(epochs, niter, warmup):
    got = cosine_schedule(0.002, 1e-6, epochs, niter, warmup_epochs=warmup)
    assert got.dtype == np.float64 and len(got) == epochs * niter
    assert np.allclose(got, rederived(0.002, 1e-6, epochs, niter, warmup), rtol=0, atol=1e-15)


def test_repeated_peak_and_zero_start():
    s = cosine_schedule(1.0, 0.1, 4, 5, warmup_epochs=2)
    assert s[0] == 0.0
    assert s[9] == 1.0 and s[10] == 1.0  # last warm-up value and first cosine value are both the peak
    assert s[-1] > 0.1  # the cosine never reaches its final value


def test_increasing_cosine_for_weight_decay_and_momentum():
    wd = cosine_schedule(0.04, 0.4, 3, 4)
    assert wd[0] == pytest.approx(0.04) and np.all(np.diff(wd) > 0) and wd[-1] < 0.4
    m = cosine_schedule(0.996, 1.0, 3, 4)
    assert m[0] == pytest.approx(0.996) and m[-1] < 1.0


def test_warmup_longer_than_run_is_rejected():
    with pytest.raises(ValueError):
        cosine_schedule(1.0, 0.0, 2, 3, warmup_epochs=3)


def test_lr_scaling():
    assert scaled_lr(0.0005, 64, 8) == pytest.approx(0.001)
    assert scaled_lr(0.0005, 64, 16) == pytest.approx(0.002)
