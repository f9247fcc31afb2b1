"""Song gain's fullness: how bright each stretch of a song is follows how full each band is,
not only its loudest notes (cqtml_env.show.song_gain, issue 13)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from test_show_song_gain import GoldLevelPolicy

from cqtml_env.contract import DEFAULT_FRAME_RATE, device_bands
from cqtml_env.contract import SAMPLE_RATE as SR
from cqtml_env.show import make_show
from cqtml_env.show.song_gain import SONG_FULLNESS, SONG_FULLNESS_S, SongGain


def test_apply_adds_the_offset_to_the_level():
    sg = SongGain(num_devices=2)
    a = np.array([[0.0, 0.5, 1.0], [0.2, 0.4, 0.6]])
    window = (np.array([0.3, 0.2]), np.array([0.7, 0.8]))
    song = (np.array([0.2, 0.1]), np.array([0.9, 0.9]))
    off = np.array([[0.05, 0.0, -0.05], [0.1, 0.1, 0.1]])
    out = sg.apply(a, window, song, off)
    level = window[0][:, None] + a * (window[1] - window[0])[:, None] + off
    expect = np.clip((level - song[0][:, None]) / (song[1] - song[0])[:, None], 0, 1)
    np.testing.assert_allclose(out, expect, atol=1e-6)
    np.testing.assert_allclose(sg.apply(a, window, song, np.zeros_like(a)), sg.apply(a, window, song))


def test_fullness_levels_are_each_bands_mean_of_the_louder_channel():
    sg = SongGain(num_devices=4)
    rng = np.random.default_rng(0)
    cqt = rng.random((2, 84, 30)).astype(np.float32)
    means = sg.fullness_levels(cqt)
    assert means.shape == (4, 30) and means.dtype == np.float32
    mono = cqt.max(axis=0)
    for d, (lo, hi) in enumerate(device_bands(84, 4)):
        np.testing.assert_allclose(means[d], mono[lo:hi].mean(axis=0), rtol=1e-6)
    assert np.all(means <= sg.levels(cqt) + 1e-6)  # a band's mean never tops its loudest bins


def test_offset_is_the_smoothed_gap_times_fullness():
    sg = SongGain(num_devices=1, frame_rate=10.0)  # 1 s = 10 frames
    levels = np.full((1, 60), 0.6)
    means = np.concatenate([np.full((1, 30), 0.2), np.full((1, 30), 0.5)], axis=1)
    off = sg.offset(levels, means)
    assert off.shape == (1, 60)
    np.testing.assert_allclose(off[0, :20], SONG_FULLNESS * -0.4)  # far from the step
    np.testing.assert_allclose(off[0, 40:], SONG_FULLNESS * -0.1)
    ramp = off[0, 24:36]
    assert np.all(np.diff(ramp) >= 0) and np.count_nonzero(np.diff(off[0])) == 10  # 1 s wide
    np.testing.assert_array_equal(SongGain(num_devices=1, fullness=0.0).offset(levels, means), 0)
    full = SongGain(num_devices=1, fullness=1.0, frame_rate=10.0).offset(levels, means)
    np.testing.assert_allclose((levels + full)[0, :20], means[0, :20])  # all the way, away
    np.testing.assert_allclose((levels + full)[0, 40:], means[0, 40:])


@pytest.mark.parametrize("kwargs, match", [
    ({"fullness": -0.1}, "fullness must be in"), ({"fullness": 1.5}, "fullness must be in"),
    ({"fullness_s": 0.0}, "fullness_s and frame_rate"), ({"frame_rate": -1.0}, "frame_rate"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SongGain(num_devices=4, **kwargs)


def _tones(t: np.ndarray, freqs, amp: float) -> np.ndarray:
    return amp * sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs))


@pytest.fixture(scope="module")
def thin_full_song(tmp_path_factory):
    """50 s in five 10 s sections: quiet, thin, full, thin, full. One tone in each middle
    band throughout (12 dB down in the quiet section); the full sections add 14 tones 26 dB
    below it across those bands: a pad under the same lead."""
    t = np.arange(50 * SR) / SR
    section = np.floor(t / 10.0)
    lead = _tones(t, (220.0, 660.0), 0.2) * np.where(section == 0, 0.25, 1.0)
    pad = _tones(t, (130.8, 155.6, 174.6, 196.0, 246.9, 293.7, 349.2,
                     415.3, 493.9, 554.4, 740.0, 830.6, 987.8, 1108.7), 0.01)
    y = (lead + np.isin(section, (2, 4)) * pad).astype(np.float32)
    path = tmp_path_factory.mktemp("full") / "thin_full.wav"
    sf.write(str(path), np.stack([y, y], axis=1), SR)
    return path


def _sections(levels: np.ndarray, fr: float) -> np.ndarray:
    """``[5 sections, 2]``: the middle devices' mean level over each section's middle 6 s."""
    return np.stack([levels[1:3, int((10 * k + 2) * fr): int((10 * k + 8) * fr)].mean(axis=1)
                     for k in range(5)])


def test_a_fuller_stretch_gets_brighter_with_fullness(thin_full_song):
    """Thin and full sections share their loudest note. With the loudest notes only, a thin
    section is lit at about 0.7 against the full one's 0.97; with fullness, at about 0.37
    (measured): how full the band is sets how bright the stretch is. The quiet one stays dark."""
    pol = GoldLevelPolicy()
    plain = make_show(thin_full_song, pol, out=None, progress=False, song_fullness=0.0)
    full = make_show(thin_full_song, pol, out=None, progress=False)
    assert full.song_gain["fullness"] == SONG_FULLNESS and plain.song_gain["fullness"] == 0.0
    sp, sfu = (_sections(s.activations, s.frame_rate) for s in (plain, full))
    thin, fuller = [1, 3], [2, 4]
    gap_plain = (sp[fuller] - sp[thin]).mean()
    gap_full = (sfu[fuller] - sfu[thin]).mean()
    assert gap_full > gap_plain + 0.2, (gap_plain, gap_full)
    assert sfu[thin].max() < sp[thin].min() - 0.15  # thin stretches darker
    assert sfu[fuller].min() > 0.9 and sp[fuller].min() > 0.9  # full ones full either way
    assert sfu[0].max() < 0.05 and sp[0].max() < 0.05  # the quiet section dark either way


def test_show_is_the_whole_song_rule_on_the_offset_level(thin_full_song, tmp_path):
    """Window by window, a policy that auto-gains what it sees ends up, after song gain with
    fullness, at the same rule applied once to the whole song's offset level: the windows'
    plumbing (offset slices, padding, the song range over the offset level) is exact."""
    from cqtml_env import CQTProcessor
    from cqtml_env.show.inference import cqt_to_disk
    from cqtml_env.show.stream import AudioReader

    pol = GoldLevelPolicy()
    show = make_show(thin_full_song, pol, out=tmp_path / "s", outputs=("json",), progress=False)
    song = cqt_to_disk(AudioReader(thin_full_song, SR), CQTProcessor(), tmp_path / "c.f16")
    cqt = song.frames(0, song.num_frames)
    sg = SongGain(num_devices=4, frame_rate=DEFAULT_FRAME_RATE)
    level = sg.levels(cqt)
    shifted = level + sg.offset(level, sg.fullness_levels(cqt))
    floor, ref = sg.range(shifted)
    whole = np.clip((shifted - floor[:, None]) / (ref - floor)[:, None], 0, 1)
    n = min(whole.shape[1], show.activations.shape[1])
    err = np.abs(show.activations[:, :n] - whole[:, :n])
    assert np.median(err) < 1e-4 and np.percentile(err, 99) < 0.03
    meta = json.loads((tmp_path / "s" / "show.json").read_text())["song_gain"]
    assert meta["fullness"] == SONG_FULLNESS and meta["fullness_s"] == SONG_FULLNESS_S
    np.testing.assert_allclose(meta["song_ref"], ref, atol=1e-3)


def test_cli_takes_and_checks_song_fullness(thin_full_song, tmp_path, capsys):
    pytest.importorskip("cqtml_policy")
    from cqtml_env.cli.show import main

    out = tmp_path / "show"
    assert main([str(thin_full_song), "--policy", "band-follow", "--out", str(out), "--outputs",
                 "json", "--quiet", "--song-fullness", "0.25"]) == 0
    assert json.loads((out / "show.json").read_text())["song_gain"]["fullness"] == 0.25
    assert "fullness 0.25" in capsys.readouterr().out
    assert main([str(thin_full_song), "--policy", "band-follow", "--out", str(tmp_path / "bad"),
                 "--outputs", "json", "--quiet", "--song-fullness", "2"]) == 2
    assert "fullness must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
