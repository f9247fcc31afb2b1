"""gold-v6 (docs/GOLD.md): v5 with each band's level the mean of its 12 loudest bins;
selectable beside unchanged gold-v1..v5."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_gold_v4 import three_shows
from test_gold_v5 import PINNED as PINNED_BEFORE_V5

from cqtml_env import GoldScorer, SyntheticMusic
from cqtml_env.contract import device_bands
from cqtml_env.gold import GOLD_V5, GOLD_V6, GOLD_VERSIONS, GoldConfig

# scores of (flat 0.5, a ramp, the version's own target) on clip 1 of SyntheticMusic(seed=3),
# computed by scorer.py before gold-v6 existed (commit 96a07e8)
PINNED = {
    **PINNED_BEFORE_V5,
    "gold-v5": [0.348359490172969, 0.48375896239712, 0.9394410075334716],
}


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    ds = SyntheticMusic(num_clips=4, seed=3)
    return [ds[i] for i in range(4)]


@pytest.mark.parametrize("version", sorted(PINNED))
def test_older_versions_are_bit_identical_after_v6(clips, version):
    s = GoldScorer(version=version)
    assert s.score(clips[1], three_shows(s, clips[1])).tolist() == PINNED[version]


def test_v6_is_v5_with_twelve_top_bins():
    assert GOLD_VERSIONS.index("gold-v6") == GOLD_VERSIONS.index("gold-v5") + 1
    assert GOLD_V6 == {**GOLD_V5, "top_bins": 12} and GOLD_V5["top_bins"] == 6
    s = GoldScorer(version="gold-v6")
    assert replace(s.config, weights={}) == replace(GoldConfig.v6(), weights={})
    assert replace(s.config, top_bins=6, version="gold-v5") == GoldScorer(version="gold-v5").config


def test_v6_level_is_the_mean_of_each_bands_twelve_loudest_bins(clips):
    c = clips[0]
    level = GoldScorer(version="gold-v6").band_levels(c)
    mono = c.max(axis=0)
    for d, (lo, hi) in enumerate(device_bands(c.shape[1], 4)):
        want = np.sort(mono[lo:hi], axis=0)[-12:].mean(axis=0)
        np.testing.assert_allclose(level[d], want, rtol=1e-6)
    assert not np.allclose(level, GoldScorer(version="gold-v5").band_levels(c))


def test_v6_target_is_its_own_optimum(clips):
    v5, v6 = GoldScorer(version="gold-v5"), GoldScorer(version="gold-v6")
    for c in clips:
        y5, y6 = v5.features(c).target, v6.features(c).target
        assert y6.min() >= 0.0 and y6.max() <= 1.0
        assert v6.score(c, y6) > v6.score(c, np.clip(y6 + 0.25, 0, 1))  # a brighter copy loses
        assert v6.score(c, y6) > v6.score(c, y5)  # v5's target is not v6's optimum
