"""gold-v2 (docs/GOLD.md): selectable beside an unchanged gold-v1, and its optimum is a
dynamic, punchy, flash-safe show rather than a bright flat one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cqtml_env import GoldScorer, SyntheticMusic
from cqtml_env.gold import GOLD_V2, V2_WEIGHTS, GoldConfig, count_transitions
from cqtml_env.preferences.candidates import band_follower


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    ds = SyntheticMusic(num_clips=6, seed=3)
    return [ds[i] for i in range(6)]


def test_v1_stays_the_default_and_bit_identical(clips):
    # values computed by gold.py before gold-v2 existed (commit e627151)
    c = clips[0]
    t = np.linspace(0, 1, c.shape[2], dtype=np.float32)
    v1 = GoldScorer()
    acts = np.stack([np.full((4, c.shape[2]), 0.5, np.float32), np.tile(t, (4, 1)),
                     v1.features(c).target])
    assert v1.config.version == "gold-v1"
    assert v1.score(c, acts).tolist() == [0.31800556758562026, 0.5384992016156075,
                                          0.9271699431798514]
    same = GoldScorer(version="gold-v1")
    assert same.config == v1.config and same.score(c, acts).tolist() == v1.score(c, acts).tolist()


def test_v2_is_selectable_by_version_and_preset():
    s = GoldScorer(version="gold-v2")
    preset = GoldConfig.v2()
    assert replace(s.config, weights={}) == replace(preset, weights={})
    assert s.config.weights == pytest.approx(preset.weights)
    assert s.config.version == "gold-v2" and s.config.flash_swing == GOLD_V2["flash_swing"]
    assert s.weights == pytest.approx(V2_WEIGHTS)
    # explicit arguments win over the preset
    assert GoldScorer(version="gold-v2", flash_swing=0.2).config.flash_swing == 0.2
    with pytest.raises(ValueError, match="unknown gold version"):
        GoldScorer(version="gold-v9")


def test_v2_prefers_a_dynamic_follower_to_bright_flat_versions_of_it(clips):
    v1, v2 = GoldScorer(), GoldScorer(version="gold-v2")
    margins = {"v1": [], "v2": []}
    for c in clips:
        follow = band_follower(c, 4)
        flat = np.stack([follow, 0.55 + 0.35 * follow, np.clip(follow + 0.3, 0, 1),
                         np.full_like(follow, 0.75)])
        for name, s in (("v1", v1), ("v2", v2)):
            sc = s.score(c, flat)
            margins[name].append(sc[0] - sc[1:].max())
        assert v2.score(c, flat)[0] > v2.score(c, flat)[1:].max()
    assert np.mean(margins["v2"]) > np.mean(margins["v1"])


def _max_flashes(y: np.ndarray, swing: float, win: int) -> float:
    ev = count_transitions(y, swing)  # [D, T]
    return max(ev[:, i:i + win].sum(axis=1).max() / 2 for i in range(ev.shape[1] - win))


def test_v2_target_is_its_own_optimum_and_punches_on_onsets(clips):
    v1, v2 = GoldScorer(), GoldScorer(version="gold-v2")
    for c in clips:
        f2 = v2.features(c)
        y1, y2 = v1.features(c).target, f2.target
        assert v2.score(c, y2) > v2.score(c, y1)
        assert (y2 == 1.0).sum() > (y1 == 1.0).sum()  # full flashes on the strong onsets


def test_v2_punches_are_spaced_to_stay_flash_safe():
    v2 = GoldScorer(version="gold-v2")
    fr = v2.config.frame_rate
    t_len = int(4 * fr)
    onsets = [np.arange(2, t_len, 4)]  # a note every 4 frames: ~11 per second
    flux = np.ones((1, t_len), np.float32)
    y = v2._punch(np.zeros((1, t_len), np.float32), flux, onsets)
    starts = np.flatnonzero(y[0] == 1.0)
    assert len(starts) >= 3 and np.diff(starts).min() >= round(v2.config.punch_min_gap_s * fr)
    assert _max_flashes(y, v2.config.flash_swing, int(round(fr))) <= 3
