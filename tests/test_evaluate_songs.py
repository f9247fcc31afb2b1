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
