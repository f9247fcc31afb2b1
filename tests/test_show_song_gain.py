"""Song gain: windows put back on the song's dynamic range (cqtml_env.show.song_gain)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import beat_song

from cqtml_env import GoldScorer
from cqtml_env.contract import DEFAULT_FRAME_RATE
from cqtml_env.contract import SAMPLE_RATE as SR
from cqtml_env.show import make_show
from cqtml_env.show.song_gain import SONG_GAIN_GOLD_VERSION, SongGain
from cqtml_env.versions import ENV_GOLD_VERSIONS, LATEST_ENV


def test_apply_maps_the_window_range_onto_the_song_range():
    sg = SongGain(num_devices=2)
    a = np.array([[0.0, 0.25, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0]])
    same = (np.array([0.2, 0.3]), np.array([0.8, 0.9]))
    np.testing.assert_allclose(sg.apply(a, same, same), a, atol=1e-6)  # nothing to restore
    window = (np.array([0.5, 0.2]), np.array([0.7, 0.9]))  # device 0 quiet, 1 wider than song
    song = (np.array([0.3, 0.4]), np.array([0.9, 0.8]))
    out = sg.apply(a, window, song)
    level0 = 0.5 + a[0] * 0.2
    np.testing.assert_allclose(out[0], (level0 - 0.3) / 0.6, atol=1e-6)
    assert out[0].max() < 0.7  # a quiet window never reaches full
    assert out[1, 0] == 0.0 and out[1, -1] == 1.0  # clipped into [0, 1]
    assert out.dtype == np.float32 and out.shape == a.shape


def test_range_is_the_gold_targets_own():
    """One source of truth: the gold-v5 level target is (L - floor) / (ref - floor) with the
    scorer's band_range, so the show's song gain undoes exactly the target's auto-gain."""
    g = GoldScorer(version="gold-v5")
    rng = np.random.default_rng(0)
    cqt = (rng.random((2, 84, 216)) ** 2).astype(np.float32)
    level = g.band_levels(cqt)
    assert level.shape == (4, 216)
    np.testing.assert_allclose(level, g.features(cqt).level)
    floor, ref = g.band_range(level)
    assert floor.shape == ref.shape == (4,) and np.all(ref - floor >= 0.15 - 1e-6)
    lin = np.clip((level - floor[:, None]) / (ref - floor)[:, None], 0, 1)
    np.testing.assert_allclose(g._target_v2(level), np.where(level > floor[:, None], lin, 0),
                               atol=1e-6)
    v1 = GoldScorer(version="gold-v1")
    f1, r1 = v1.band_range(level)
    assert np.all(f1 == v1.config.gate) and np.all(r1 == r1[0])  # one ref for the whole clip
    with pytest.raises(ValueError, match="level must be"):
        g.band_range(level[:3])


def test_follows_the_latest_env_and_refuses_a_loudness_law():
    assert ENV_GOLD_VERSIONS[LATEST_ENV] == SONG_GAIN_GOLD_VERSION
    with pytest.raises(ValueError, match="loudness law"):
        SongGain(num_devices=4, gold_version="gold-v2")


class GoldLevelPolicy:
    """A protocol-only policy that outputs gold-v5's level rule over its own input:
    ``(L - floor) / (ref - floor)`` with the range of everything it sees (window + context)."""

    num_devices = 4

    def __init__(self, version: str = SONG_GAIN_GOLD_VERSION) -> None:
        self.gold = GoldScorer(version=version, cache_size=0)

    def generate_actions(self, states, num_actions_per_state=1, temperature=0.0):
        out = []
        for s in states:
            level = self.gold.band_levels(np.clip(np.asarray(s, np.float32), 0, 1))
            floor, ref = self.gold.band_range(level)
            a = np.clip((level - floor[:, None]) / (ref - floor)[:, None], 0, 1)
            out.append([a.astype(np.float32)])
        return out


@pytest.fixture(scope="module")
def sections_song(tmp_path_factory):
    """36 s: a loud beat, a break 20 dB down, the beat again, a quieter outro."""
    y = beat_song(36.0)
    gain = np.repeat([1.0, 0.1, 1.0, 0.3], y.shape[0] // 4 + 1)[: y.shape[0], None]
    path = tmp_path_factory.mktemp("sg") / "sections.wav"
    sf.write(str(path), (y * gain).astype(np.float32), SR)
    return path


def test_song_gain_turns_window_relative_output_into_song_relative(sections_song, tmp_path):
    """A policy that auto-gains over what it sees, run window by window, gives after song gain
    what the same rule gives over the whole song at once: the same light for the same level
    anywhere in the song. Without song gain each window keeps its own range."""
    from cqtml_env import CQTProcessor
    from cqtml_env.show.inference import cqt_to_disk
    from cqtml_env.show.stream import AudioReader

    pol = GoldLevelPolicy()
    on = make_show(sections_song, pol, out=tmp_path / "on", outputs=("json",), progress=False,
                   song_fullness=0.0)  # the plain inverse (fullness: tests/test_song_fullness.py)
    off = make_show(sections_song, pol, out=None, progress=False, song_gain=False)
    proc = CQTProcessor()
    song = cqt_to_disk(AudioReader(sections_song, SR), proc, tmp_path / "c.f16")
    level = pol.gold.band_levels(song.frames(0, song.num_frames))
    floor, ref = pol.gold.band_range(level)
    whole = np.clip((level - floor[:, None]) / (ref - floor)[:, None], 0, 1)
    n = min(whole.shape[1], on.activations.shape[1])
    err_on = np.abs(on.activations[:, :n] - whole[:, :n])
    err_off = np.abs(off.activations[:, :n] - whole[:, :n])
    # equal except where a window's own range clipped the rule (a level outside what it saw)
    assert np.median(err_on) < 1e-4 and np.percentile(err_on, 99) < 0.03
    assert err_off.mean() > 0.02 and np.percentile(err_off, 90) > 0.05  # off: 0.03 mean, 0.11 p90
    assert err_off.mean() > 10 * err_on.mean()
    meta = json.loads((tmp_path / "on" / "show.json").read_text())["song_gain"]
    assert meta["enabled"] is True and meta["gold_version"] == SONG_GAIN_GOLD_VERSION
    np.testing.assert_allclose(meta["song_ref"], ref, atol=1e-3)
    assert off.song_gain == {"enabled": False}


def test_song_gain_on_the_policys_own_version(sections_song, tmp_path):
    """A policy that follows gold-v7's rule (dark end: each band's 0.5th percentile) is put
    back on the song's range by song gain on gold-v7's range; the default (gold-v5's 5th
    percentile) maps it less exactly."""
    from cqtml_env import CQTProcessor
    from cqtml_env.show.inference import cqt_to_disk
    from cqtml_env.show.stream import AudioReader

    pol = GoldLevelPolicy("gold-v7")
    own = make_show(sections_song, pol, out=None, progress=False, song_gain="gold-v7",
                    song_fullness=0.0)
    other = make_show(sections_song, pol, out=None, progress=False, song_fullness=0.0)
    assert own.song_gain["gold_version"] == "gold-v7"
    assert other.song_gain["gold_version"] == SONG_GAIN_GOLD_VERSION
    song = cqt_to_disk(AudioReader(sections_song, SR), CQTProcessor(), tmp_path / "c.f16")
    level = pol.gold.band_levels(song.frames(0, song.num_frames))
    floor, ref = pol.gold.band_range(level)
    whole = np.clip((level - floor[:, None]) / (ref - floor)[:, None], 0, 1)
    n = min(whole.shape[1], own.activations.shape[1])
    err_own = np.abs(own.activations[:, :n] - whole[:, :n]).mean()
    err_other = np.abs(other.activations[:, :n] - whole[:, :n]).mean()
    assert err_own < 0.01 and err_other > 2 * err_own


def test_cli_takes_song_gain_from_the_checkpoints_teacher(sections_song, tmp_path, capsys):
    """A checkpoint whose trainer.json records a gold-target teacher (agents/sft.py) gets song
    gain on that version's range; show.json and the CLI say which."""
    policy_pkg = pytest.importorskip("cqtml_policy")
    from cqtml_env.cli.show import main

    ckpt = tmp_path / "ckpt"
    policy_pkg.create_policy("cnn", (2, 84, 216), num_devices=4, device="cpu").save_pretrained(ckpt)
    (ckpt / "trainer.json").write_text(json.dumps({"extra": {"gold_version": "gold-v7"}}))
    out = tmp_path / "show"
    assert main([str(sections_song), "--policy", str(ckpt), "--out", str(out), "--outputs",
                 "json", "--quiet"]) == 0
    assert json.loads((out / "show.json").read_text())["song_gain"]["gold_version"] == "gold-v7"
    assert "song gain: on, gold-v7's range" in capsys.readouterr().out


def test_one_window_song_is_unchanged(tmp_path):
    """A song of one window is its own range: song gain changes nothing."""
    path = tmp_path / "short.wav"
    sf.write(str(path), beat_song(4.0), SR)
    policy_pkg = pytest.importorskip("cqtml_policy")
    bf = policy_pkg.BandFollowPolicy(num_devices=4, frame_rate=DEFAULT_FRAME_RATE)
    on = make_show(path, bf, out=None, progress=False)
    off = make_show(path, bf, out=None, progress=False, song_gain=False)
    np.testing.assert_array_equal(on.levels, off.levels)


def test_cli_records_song_gain_and_switches_it_off(sections_song, tmp_path, capsys):
    pytest.importorskip("cqtml_policy")
    from cqtml_env.cli.show import main

    for flags, enabled in (([], True), (["--no-song-gain"], False)):
        out = tmp_path / f"cli{enabled}"
        rc = main([str(sections_song), "--policy", "band-follow", "--out", str(out),
                   "--outputs", "json", "--quiet", *flags])
        assert rc == 0
        assert json.loads((out / "show.json").read_text())["song_gain"]["enabled"] is enabled
        assert ("song gain: on" if enabled else "song gain: off") in capsys.readouterr().out


def test_context_chunks_come_from_the_middle_of_equal_parts():
    from cqtml_env.show.inference import context_starts

    starts = context_starts(1000, 215, 43)
    assert len(starts) == 5
    np.testing.assert_allclose(starts + 43 / 2, (np.arange(5) + 0.5) * 200, atol=0.5)
    assert starts.min() > 0 and starts.max() + 43 < 1000  # not the song's first or last frames
    assert list(context_starts(30, 215, 43)) == [0] * 5  # a song shorter than a chunk
    assert list(context_starts(1000, 43, 43)) == [478]  # one chunk: the middle


def _steady(seconds: float, bpm: float = 120.0) -> np.ndarray:
    """A song with no dynamics: a kick on every beat, a hat between, a constant chord."""
    t = np.arange(int(seconds * SR)) / SR
    beat = 60.0 / bpm
    kick = np.exp(-(t % beat) * 30) * np.sin(2 * np.pi * 55 * t)
    hat = np.random.default_rng(0).normal(0, 1, t.size) * np.exp(-((t + beat / 2) % beat) * 60)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 880.0, 1760.0)) / 5
    y = 0.5 * kick + 0.15 * hat + 0.25 * chord
    return np.stack([y, 0.9 * y], axis=1).astype(np.float32)


def test_a_silent_intro_does_not_darken_the_show(tmp_path):
    """1 s of silence, then 30 s of a song with no dynamics. Were the song context to take
    the song's first second (it did: chunks from the first frame to the last), every window
    would see a silent second as a tenth of what it sees, against 3 % of the song: its floor
    would sit far below the song's, and song gain would darken the whole show (to 0.15 from
    0.48 here, measured with the old chunks)."""
    y = np.concatenate([np.zeros((SR, 2), np.float32), _steady(30.0)])
    path = tmp_path / "intro.wav"
    sf.write(str(path), y, SR)
    policy_pkg = pytest.importorskip("cqtml_policy")
    bf = policy_pkg.BandFollowPolicy(num_devices=4, frame_rate=DEFAULT_FRAME_RATE)
    on = make_show(path, bf, out=None, progress=False)
    off = make_show(path, bf, out=None, progress=False, song_gain=False)
    music = slice(int(2 * on.frame_rate), None)
    assert off.levels[:, music].mean() > 0.3
    assert on.levels[:, music].mean() > 0.85 * off.levels[:, music].mean()


def test_song_gain_on_a_file_that_cannot_seek(tmp_path):
    """m4a goes through PyAV, which cannot seek: the context is read from the stored CQT after
    it streams (``windowed_actions``). Song gain works there too, and the show matches the
    same song from a wav."""
    av = pytest.importorskip("av")
    policy_pkg = pytest.importorskip("cqtml_policy")
    y = np.concatenate([beat_song(10.0), 0.2 * beat_song(10.0, seed=1)])
    wav, m4a = tmp_path / "s.wav", tmp_path / "s.m4a"
    sf.write(str(wav), y, SR)
    with av.open(str(m4a), "w") as c:
        s = c.add_stream("aac", rate=SR, bit_rate=192000)
        s.layout = "stereo"
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(y.T), format="fltp", layout="stereo")
        fr.sample_rate = SR
        for pkt in [*s.encode(fr), *s.encode(None)]:
            c.mux(pkt)
    bf = policy_pkg.BandFollowPolicy(num_devices=4, frame_rate=DEFAULT_FRAME_RATE)
    a = make_show(m4a, bf, out=None, progress=False)
    b = make_show(wav, bf, out=None, progress=False)
    assert len(a.song_gain["song_ref"]) == 4 and a.song_gain["enabled"]
    n = min(a.levels.shape[1], b.levels.shape[1]) // 22 * 22
    slow_a, slow_b = (x.levels[:, :n].reshape(4, -1, 22).mean(-1) for x in (a, b))  # 0.5 s
    assert np.corrcoef(slow_a.ravel(), slow_b.ravel())[0, 1] > 0.9  # AAC shifts beats a little
    assert slow_a[:, -20:].mean() < 0.7 * slow_a[:, :20].mean()  # the quiet half stays darker
    np.testing.assert_allclose(a.song_gain["song_ref"], b.song_gain["song_ref"], atol=0.02)
