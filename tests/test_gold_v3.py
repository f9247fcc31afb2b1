"""gold-v3 (docs/GOLD.md): selectable beside unchanged gold-v1/v2; its target follows the band
without frame jitter and punches on onsets by as much as they are strong."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cqtml_env import GoldScorer, SyntheticMusic
from cqtml_env.gold import GOLD_V3, V2_WEIGHTS, GoldConfig, count_transitions


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    ds = SyntheticMusic(num_clips=6, seed=3)
    return [ds[i] for i in range(6)]


def test_v2_is_bit_identical_after_v3(clips):
    # values computed by scorer.py before gold-v3 existed (commit 04faafc)
    c = clips[0]
    t = np.linspace(0, 1, c.shape[2], dtype=np.float32)
    v2 = GoldScorer(version="gold-v2")
    acts = np.stack([np.full((4, c.shape[2]), 0.5, np.float32), np.tile(t, (4, 1)),
                     v2.features(c).target])
    assert v2.score(c, acts).tolist() == [0.3270357461595692, 0.5033927940110903,
                                          0.9318308141882619]


def test_v3_is_selectable_by_version_and_preset():
    s = GoldScorer(version="gold-v3")
    preset = GoldConfig.v3()
    assert replace(s.config, weights={}) == replace(preset, weights={})
    assert s.config.weights == pytest.approx(V2_WEIGHTS)
    assert s.config.version == "gold-v3"
    assert s.config.target_decay_s == GOLD_V3["target_decay_s"] > 0 and s.config.punch_mix
    assert GoldScorer(version="gold-v3", punch_level=0.5).config.punch_level == 0.5
    with pytest.raises(ValueError, match="punch_source"):
        GoldScorer(version="gold-v3", punch_source="nowhere").features(clips_for_error())


def clips_for_error() -> np.ndarray:
    return SyntheticMusic(num_clips=1, seed=0)[0]


def test_v3_target_follows_without_jitter_flashes():
    v2, v3 = GoldScorer(version="gold-v2"), GoldScorer(version="gold-v3")
    fr = v3.config.frame_rate
    t_len = int(3 * fr)
    level = np.full((4, t_len), 0.8, np.float32)
    level[:, 1::2] = 0.72  # a steady tone whose level jitters by 8 % of the scale every frame
    y2, y3 = v2._target_v2(level), v3._follow(v3._target_v2(level))
    swing = v3.config.flash_swing
    assert count_transitions(y2, swing).sum() > 10 * t_len / fr  # v2's level target flickers
    assert count_transitions(y3, swing).sum() <= 4  # v3's switches on, then holds
    assert y3[:, -1].min() > 0.5  # and stays lit


def test_v3_punches_rise_above_the_bed_by_onset_strength():
    v3 = GoldScorer(version="gold-v3")
    cfg = v3.config
    fr = cfg.frame_rate
    t_len = int(3 * fr)
    bed = np.ones((1, t_len), np.float32)  # a band already at full level
    o1, o2 = int(0.5 * fr), int(1.5 * fr)
    flux = np.zeros((1, t_len), np.float32)
    flux[0, o1], flux[0, o2] = 1.0, 0.25
    y = v3._punch(bed, flux, [np.array([o1, o2])])
    assert y.max() <= 1.0 + 1e-6
    rise1 = y[0, o1] - y[0, o1 - 1]
    rise2 = y[0, o2] - y[0, o2 - 1]
    assert rise1 == pytest.approx(cfg.punch_level, abs=1e-5)  # a real rise, even at full level
    assert rise2 == pytest.approx(cfg.punch_level * 0.25 ** cfg.punch_scale_power, abs=1e-3)
    # v2 punches with max(): a band at full level gets no rise at all
    v2 = GoldScorer(version="gold-v2")
    assert np.allclose(v2._punch(bed, flux, [np.array([o1, o2])]), 1.0)


def test_v3_target_is_its_own_optimum(clips):
    v2, v3 = GoldScorer(version="gold-v2"), GoldScorer(version="gold-v3")
    for c in clips:
        y2, y3 = v2.features(c).target, v3.features(c).target
        assert y3.min() >= 0.0 and y3.max() <= 1.0
        assert v3.score(c, y3) > v3.score(c, y2)
