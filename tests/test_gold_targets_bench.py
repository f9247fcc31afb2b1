"""bench/gold_targets.py's beat diagnostic: a peak of the metric's prominence at a beat is a
hit, a smaller one low, none none (the numbers behind docs/GOLD.md's gold-v5 diagnosis)."""

from __future__ import annotations

import numpy as np
from conftest import load_bench

from agents.metrics import PEAK_PROMINENCE

gold_targets = load_bench("gold_targets")


def test_peak_categories_at_the_beats():
    fr = 40.0
    rig = np.full(200, 0.4)
    rig[40] += 2 * PEAK_PROMINENCE  # a real peak at 1.0 s
    rig[120] += PEAK_PROMINENCE / 3  # a ripple at 3.0 s
    beats = np.array([1.02, 3.0, 4.0])  # the first within 50 ms of its peak; the last on flat light
    assert gold_targets.peak_categories(rig, beats, fr) == {"hit": 1, "low": 1, "none": 1}
    late = np.array([1.1])  # 100 ms late: outside the metrics' tolerance
    assert gold_targets.peak_categories(rig, late, fr) == {"hit": 0, "low": 0, "none": 1}
