"""gold-v5 (docs/GOLD.md): selectable beside unchanged gold-v1..v4; v4's target plus a pulse of
the whole rig on the clip's beats, tracked on an envelope without the switch-on at frame 0."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.signal import find_peaks
from test_gold_v4 import PINNED as PINNED_BEFORE_V4
from test_gold_v4 import three_shows
from test_metrics import click_track

import agents.metrics as M
from cqtml_env import CQTProcessor, GoldScorer, SyntheticMusic
from cqtml_env.gold import GOLD_V5, GOLD_VERSIONS, V2_WEIGHTS, GoldConfig

# scores of (flat 0.5, a ramp, the version's own target) on clip 1 of SyntheticMusic(seed=3),
# computed by scorer.py before gold-v5 existed (commit 457c491)
PINNED = {
    **PINNED_BEFORE_V4,
    "gold-v4": [0.350465756956536, 0.4878661984758632, 0.9256612864879052],
}


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    ds = SyntheticMusic(num_clips=6, seed=3)
    return [ds[i] for i in range(6)]


@pytest.fixture(scope="module")
def song():
    """8 s of 1 kHz clicks at 120 BPM over a steady chord that is loud from the first sample
    (an excerpt, as every training clip is): its CQT, audio features and click frames."""
    p = CQTProcessor(max_duration=8.0)
    audio, times = click_track(p, start=0.3)
    t = np.arange(audio.shape[1]) / p.sample_rate
    chord = 0.3 * sum(np.sin(2 * np.pi * f * t) for f in (110.0, 220.0, 330.0, 440.0)) / 4
    audio = ((audio + chord[None]) * 0.5).astype(np.float32)
    feats = M.audio_features(audio, processor=p, num_devices=4)
    return np.asarray(p(audio)), feats, np.round(times * p.frame_rate).astype(int), p.frame_rate


@pytest.mark.parametrize("version", sorted(PINNED))
def test_older_versions_are_bit_identical_after_v5(clips, version):
    s = GoldScorer(version=version)
    assert s.score(clips[1], three_shows(s, clips[1])).tolist() == PINNED[version]


def test_v5_is_selectable_by_version_and_preset(clips):
    assert "gold-v5" in GOLD_VERSIONS
    s = GoldScorer(version="gold-v5")
    assert replace(s.config, weights={}) == replace(GoldConfig.v5(), weights={})
    assert s.config.weights == pytest.approx(V2_WEIGHTS)
    assert s.config.beat_punch_level == GOLD_V5["beat_punch_level"] > 0
    assert s.config.beat_flux_lag == 2 and s.config.follow_from_first  # v4's bed underneath
    assert GoldScorer(version="gold-v5", beat_punch_level=0.2).config.beat_punch_level == 0.2
    assert GoldScorer(version="gold-v4").config.beat_punch_level == 0.0
    with pytest.raises(ValueError, match="beat_flux_lag"):
        GoldScorer(version="gold-v5", beat_flux_lag=-1).features(clips[0])


def test_v5_beat_envelope_does_not_hear_the_excerpt_switching_on(song):
    cqt, _, click_frames, fr = song
    v4, v5 = GoldScorer(version="gold-v4", frame_rate=fr), GoldScorer(version="gold-v5", frame_rate=fr)
    mono = cqt.max(axis=0)
    flux = v4.features(cqt).flux
    old, new = v4._beat_envelope(mono, flux), v5._beat_envelope(mono, flux)
    assert np.argmax(old) == 0  # v4: the loud first frame is the clip's biggest "onset"
    assert new[0] == 0.0  # nothing before the clip to rise from
    assert np.min(np.abs(np.argmax(new) - click_frames)) <= 1  # v5: its biggest is a click


def test_v5_target_is_v4s_plus_a_rig_pulse_on_every_beat(song):
    cqt, feats, click_frames, fr = song
    f4 = GoldScorer(version="gold-v4", frame_rate=fr).features(cqt)
    f5 = GoldScorer(version="gold-v5", frame_rate=fr).features(cqt)
    level = GOLD_V5["beat_punch_level"]
    beats = f5.beat_frames
    assert len(beats) >= 12
    assert all(np.min(np.abs(click_frames - b)) <= 1 for b in beats)  # the tracker hears the clicks
    pulse = f5.target - f4.target  # nothing clips on this clip: the pulse, exactly
    assert pulse.min() >= 0.0
    assert pulse.max() == pytest.approx(level, abs=1e-6)
    assert np.allclose(pulse, pulse[:1], atol=1e-6)  # the same pulse on every device
    assert np.all(pulse[:, : beats[0]] == 0)  # nothing before the first beat
    peaks, _ = find_peaks(pulse[0], height=1e-4)
    assert peaks.tolist() == beats.tolist()  # one peak per beat, on the beat
    assert np.all(pulse[0, beats] >= level * 0.5 - 1e-6)  # equal clicks: near-equal pulses
    # the rig's peaks land on the beats: beat-peak F (agents/metrics.py, from the audio) of 1
    assert M.show_metrics(f5.target, feats)["beat_recall"] == 1.0


def test_v5_pulse_is_scaled_by_the_beats_strength():
    s = GoldScorer(num_devices=2, version="gold-v5", punch_decay_s=0.05)
    env = np.zeros(60, np.float32)
    env[[10, 30]] = [1.0, 0.25]
    y = s._beat_punch(np.zeros((2, 60), np.float32), env, np.array([10, 30]))
    assert y[0, 10] == pytest.approx(0.08) and y[0, 30] == pytest.approx(0.08 * 0.25**0.5)
    assert y[0, 11] < y[0, 10] and y[0, 9] == 0.0  # it decays, and never rises before the beat
    full = s._beat_punch(np.ones((2, 60), np.float32), env, np.array([10, 30]))
    assert full.max() == 1.0  # clipped to full scale
    assert s._beat_punch(np.zeros((2, 60), np.float32), env, np.zeros(0, np.int64)).max() == 0.0


def test_v5_target_is_its_own_optimum(clips):
    v4, v5 = GoldScorer(version="gold-v4"), GoldScorer(version="gold-v5")
    for c in clips:
        y4, y5 = v4.features(c).target, v5.features(c).target
        assert y5.min() >= 0.0 and y5.max() <= 1.0
        assert v5.score(c, y5) > v5.score(c, np.clip(y5 + 0.25, 0, 1))  # a brighter copy loses
        assert v5.score(c, y5) > v5.score(c, y4)  # without the beat pulse: lower
