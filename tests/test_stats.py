"""The t-interval over seeds, clipped to a score's range (t quantiles: test_memory.py)."""

from __future__ import annotations

import math

import pytest

from rnnlab.experiments.stats import mean_ci


def test_interval_of_three_seeds():
    ci = mean_ci([0.8, 0.9, 1.0])
    assert ci.mean == pytest.approx(0.9)
    assert ci.half_width == pytest.approx(4.3027 * 0.1 / math.sqrt(3), abs=1e-4)
    assert ci.high > 1.0  # unbounded, the t-interval reaches an impossible accuracy


def test_bounds_clip_the_interval_not_the_mean():
    ci = mean_ci([0.8, 0.9, 1.0], bounds=(0.0, 1.0))
    assert ci.high == 1.0 and ci.low == pytest.approx(0.9 - ci.half_width)
    low = mean_ci([0.0, 0.05, 0.2], bounds=(0.0, 1.0))
    assert low.low == 0.0 and low.mean == pytest.approx(0.25 / 3)
