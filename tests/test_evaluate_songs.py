"""agents/evaluate_songs.py: whole songs through the show pipeline, judged by the independent
metrics (self-similarity included, which needs a whole song), a bad file skipped and counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from agents import evaluate_songs as es
from cqtml_env.contract import SAMPLE_RATE
from cqtml_env.datasets.record_like import record_like_audio


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    for k in range(2):
        sf.write(str(root / f"song{k}.wav"), record_like_audio(k, duration=12.0).T, SAMPLE_RATE)
    (root / "broken.wav").write_bytes(b"RIFF....not audio at all")
    sf.write(str(root / "silent.wav"), np.zeros((SAMPLE_RATE * 12, 2), np.float32), SAMPLE_RATE)
    return root


def test_whole_songs_are_scored_beside_the_band_follower(songs, tmp_path):
    report = es.evaluate_songs(es.Args(policy="band-follow", data=str(songs), out=str(tmp_path)))
    assert report["songs"] == 2 and report["minutes"] == pytest.approx(0.4, abs=0.01)
    assert [s["song"] for s in report["skipped"]] == ["broken.wav", "silent.wav"]
    assert "silent" in report["skipped"][1]["reason"]
    pol, band = report["summary"]["policy"], report["summary"]["band-follow"]
    assert pol == band  # the same policy twice: the pipeline is deterministic
    # the self-similarity correlation exists on whole songs (it is NaN on 5-second clips) and
    # the band-follower's light has the music's structure
    assert np.isfinite(pol["ssm_corr"]) and pol["ssm_corr"] > 0.2
    assert pol["flash_safe"] in (0.0, 0.5, 1.0) and 0 < pol["mean_brightness"] < 1
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"]["policy"]["ssm_corr"] == pytest.approx(pol["ssm_corr"])
    text = (tmp_path / "report.md").read_text()
    assert "self-similarity correlation (whole song)" in text and "broken.wav" in text
    assert saved["song_fullness"] == 0.5 and "fullness 0.5" in text
    # the band-follower's own song gain is the policy's here: one show, reported twice, and
    # song by song the policy neither wins nor loses
    assert report["summary"][es.OWN] == band and saved["own_song_gain_version"] == "gold-v5"
    for name in ("band-follow", es.OWN):
        ssm = report["paired"][name]["ssm_corr"]
        assert ssm["mean"] == ssm["low"] == ssm["high"] == 0.0
        assert (ssm["wins"], ssm["losses"], ssm["n"]) == (0, 0, 2)
    assert "as cqtml-show runs it" in text and "0 won / 0 lost of 2" in text


def test_a_checkpoint_is_also_judged_against_the_band_followers_own_show(songs, tmp_path):
    """A gold-v7 checkpoint's shows get v7's song gain; the band-follower runs once more with
    its own (gold-v5's), as cqtml-show would run it, and the paired table compares all three."""
    policy_pkg = pytest.importorskip("cqtml_policy")
    ckpt = tmp_path / "ckpt"
    policy_pkg.create_policy("cnn", (2, 84, 216), num_devices=4, device="cpu").save_pretrained(ckpt)
    (ckpt / "trainer.json").write_text(json.dumps({"extra": {"gold_version": "gold-v7"}}))
    report = es.evaluate_songs(es.Args(policy=str(ckpt), data=str(songs), out=str(tmp_path / "o")))
    assert report["song_gain_version"] == "gold-v7" and report["own_song_gain_version"] == "gold-v5"
    bf, own = report["summary"]["band-follow"], report["summary"][es.OWN]
    assert bf["mean_brightness"] != own["mean_brightness"]  # two different shows
    one = es.song_metrics(songs / "song0.wav", {"bf": _band_follower()}, song_gain="gold-v5")["bf"]
    first = next(s for s in report["per_song"] if s["song"] == "song0.wav")
    assert first[es.OWN] == pytest.approx(one)  # the own show is cqtml-show's band-follower
    for name in ("band-follow", es.OWN):
        d = [s["policy"]["beat_f"] - s[name]["beat_f"] for s in report["per_song"]]
        got = report["paired"][name]["beat_f"]
        assert got["mean"] == pytest.approx(np.mean(d)) and got["n"] == 2
        assert got["wins"] == sum(x > 0 for x in d) and got["losses"] == sum(x < 0 for x in d)


def test_paired_differences_song_by_song():
    a = np.array([0.50, 0.62, 0.71, 0.40, np.nan, 0.55])
    b = np.array([0.45, 0.60, 0.75, 0.30, 0.50, 0.55])
    r = es.paired(a, b)
    d = np.array([0.05, 0.02, -0.04, 0.10, 0.0])  # the NaN song is left out
    assert r["n"] == 5 and (r["wins"], r["losses"]) == (3, 1)
    assert r["mean"] == pytest.approx(d.mean())
    assert d.min() <= r["low"] < r["mean"] < r["high"] <= d.max()
    assert es.paired(a, b) == r  # seeded: the same interval every time
    wide = es.paired(a, b, confidence=0.99)
    assert wide["low"] <= r["low"] and wide["high"] >= r["high"]
    none = es.paired([np.nan], [0.5])
    assert none["n"] == 0 and np.isnan(none["mean"]) and np.isnan(none["low"])


def test_song_fullness_reaches_the_shows(songs, tmp_path):
    """--song-fullness is what the shows get: 0 changes the levels, and the report says so."""
    plain = es.evaluate_songs(es.Args(policy="band-follow", data=str(songs), out=str(tmp_path / "a"),
                                      song_fullness=0.0))
    assert plain["song_fullness"] == 0.0
    a = es.song_metrics(songs / "song0.wav", {"p": _band_follower()}, song_gain="gold-v7",
                        song_fullness=0.0)["p"]
    b = es.song_metrics(songs / "song0.wav", {"p": _band_follower()}, song_gain="gold-v7")["p"]
    assert a["mean_brightness"] != b["mean_brightness"]
    assert "fullness 0" in (tmp_path / "a" / "report.md").read_text()
    with pytest.raises(ValueError, match="--song-fullness 1.5: fullness must be in"):
        es.evaluate_songs(es.Args(data=str(songs), out=str(tmp_path / "b"), song_fullness=1.5))
    assert not (tmp_path / "b").exists()


def _band_follower():
    import cqtml_policy as P
    from cqtml_env.contract import DEFAULT_FRAME_RATE

    return P.BandFollowPolicy(num_devices=4, frame_rate=DEFAULT_FRAME_RATE)


def test_no_limiter_judges_the_activations_and_bad_folders_are_clear_errors(songs, tmp_path):
    strobe = StrobePolicy()
    limited = es.song_metrics(songs / "song0.wav", {"p": strobe})["p"]
    raw = es.song_metrics(songs / "song0.wav", {"p": strobe}, limiter=False)["p"]
    assert raw["flashes"] >= 10 and raw["flash_safe"] == 0.0  # a 10 Hz strobe, as the policy made it
    assert limited["flashes"] <= 3.5  # what the lights get: the limiter holds it
    with pytest.raises(ValueError, match="not a folder"):
        es.evaluate_songs(es.Args(data=str(tmp_path / "missing"), out=str(tmp_path / "o")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        es.evaluate_songs(es.Args(data=str(tmp_path / "empty"), out=str(tmp_path / "o")))
    assert es.cli(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2


class StrobePolicy:
    """A 10 Hz on/off strobe on every device, whatever the music (an adversarial policy)."""

    num_devices = 4

    def generate_actions(self, cqts, **_kw):
        import torch

        t = np.asarray(cqts[0]).shape[-1]
        wave = ((np.arange(t) // 2) % 2).astype(np.float32)  # 2 frames on, 2 off: ~10.8 Hz
        one = np.broadcast_to(wave, (1, self.num_devices, t)).copy()
        return [torch.from_numpy(one) for _ in cqts]  # per state: [1 action, D, T]
