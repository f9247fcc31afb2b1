"""gold-v4 (docs/GOLD.md): selectable beside unchanged gold-v1/v2/v3; its bed is linear in dB
between each band's own floor and ceiling and starts at the clip's level, under v3's punches."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cqtml_env import GoldScorer, SyntheticMusic
from cqtml_env.gold import GOLD_V4, GOLD_VERSIONS, V2_WEIGHTS, GoldConfig


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    ds = SyntheticMusic(num_clips=6, seed=3)
    return [ds[i] for i in range(6)]


# scores of (flat 0.5, a ramp, the version's own target) on clip 1, computed by scorer.py
# before gold-v4 existed (commit 8a1ec06)
PINNED = {
    "gold-v1": [0.33742000065634714, 0.4870413070849543, 0.9175016685079962],
    "gold-v2": [0.3332772274241458, 0.4835967696728698, 0.9264358245324771],
    "gold-v3": [0.36086534661781156, 0.5061374466524586, 0.9255910342685348],
}


def three_shows(scorer: GoldScorer, c: np.ndarray) -> np.ndarray:
    t = np.linspace(0, 1, c.shape[2], dtype=np.float32)
    return np.stack([np.full((4, c.shape[2]), 0.5, np.float32), np.tile(t, (4, 1)),
                     scorer.features(c).target])


@pytest.mark.parametrize("version", sorted(PINNED))
def test_older_versions_are_bit_identical_after_v4(clips, version):
    s = GoldScorer(version=version)
    assert s.score(clips[1], three_shows(s, clips[1])).tolist() == PINNED[version]


def test_v4_is_selectable_by_version_and_preset(clips):
    assert "gold-v4" in GOLD_VERSIONS
    s = GoldScorer(version="gold-v4")
    assert replace(s.config, weights={}) == replace(GoldConfig.v4(), weights={})
    assert s.config.weights == pytest.approx(V2_WEIGHTS)
    assert s.config.version == "gold-v4" and s.config.follow_from_first
    assert not s.config.loudness_law and s.config.floor_percentile == GOLD_V4["floor_percentile"]
    assert GoldScorer(version="gold-v4", top_bins=3).config.top_bins == 3
    # v4 is a different judge: its target differs from v3's on the same clip
    v3 = GoldScorer(version="gold-v3")
    assert not np.allclose(s.features(clips[0]).target, v3.features(clips[0]).target)


def test_v4_bed_starts_at_the_clips_level_not_dark():
    v4 = GoldScorer(version="gold-v4")
    level = np.full((4, 40), 0.7, np.float32)  # an excerpt that is loud from its first frame
    y = v4._follow(level)
    assert np.allclose(y, 0.7)  # no switch-on ramp: nothing rises where the music does not
    dark_start = GoldScorer(version="gold-v4", follow_from_first=False)._follow(level)
    assert dark_start[:, 0].max() < 0.7 - 0.1  # with the attack, a dark start ramps up


def test_v4_bed_rises_as_much_for_a_quiet_onset_as_for_a_loud_one():
    """The audio's onset strength is a dB difference: a +8 dB step is the same onset whether
    the band is quiet or loud, and v4's bed rises the same; v3's loudness law hides the quiet one."""
    step = 0.1  # the CQT's 0..1 spans 80 dB
    t_len = 100
    level = np.empty((2, t_len), np.float32)
    level[:, :50] = np.linspace(0.3, 0.8, 50)[None]  # span the band's range (floor .. ceiling)
    level[0, 50:] = 0.45  # a quiet passage ...
    level[1, 50:] = 0.65  # ... and a loud one
    level[0, 75:] += step
    level[1, 75:] += step
    for version, same in (("gold-v4", True), ("gold-v3", False)):
        s = GoldScorer(num_devices=2, version=version)
        y = s._target_v2(level)
        quiet, loud = y[0, 75] - y[0, 74], y[1, 75] - y[1, 74]
        assert loud > 0.05
        if same:
            assert quiet == pytest.approx(loud, rel=1e-4)
        else:
            assert quiet < 0.6 * loud


def test_v4_target_is_its_own_optimum(clips):
    v3, v4 = GoldScorer(version="gold-v3"), GoldScorer(version="gold-v4")
    for c in clips:
        y3, y4 = v3.features(c).target, v4.features(c).target
        assert y4.min() >= 0.0 and y4.max() <= 1.0
        assert v4.score(c, y4) > v4.score(c, y3)
        assert v4.score(c, y4) > v4.score(c, np.clip(y4 + 0.25, 0, 1))  # a brighter copy loses
