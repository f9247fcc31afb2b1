"""The independent show metrics (agents/metrics.py) on constructed signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest

import agents.metrics as M
from cqtml_env import CQTProcessor  # noqa: E402

BPM = 120.0


@pytest.fixture(scope="module")
def proc() -> CQTProcessor:
    return CQTProcessor(max_duration=8.0)


def click_track(p: CQTProcessor, bpm: float = BPM, start: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Short decaying 1 kHz clicks on every beat; returns (audio [2, S], click times s)."""
    sr = p.sample_rate
    times = np.arange(start, p.max_duration - 0.1, 60.0 / bpm)
    audio = np.zeros(p.num_samples, np.float32)
    n = int(0.03 * sr)
    click = (np.sin(2 * np.pi * 1000 * np.arange(n) / sr) * np.exp(-np.arange(n) / (0.005 * sr)))
    for t in times:
        i = int(round(t * sr))
        audio[i : i + n] += click[: len(audio) - i]
    return np.stack([audio, audio]), times


def peaks_at(times: np.ndarray, p: CQTProcessor, d: int = 4) -> np.ndarray:
    """A light that flashes (one frame at 1, decaying) at the given times on every device."""
    t = np.arange(p.num_frames) / p.frame_rate
    env = np.zeros_like(t)
    for c in times:
        env = np.maximum(env, np.where(t >= c - 0.5 / p.frame_rate,
                                       np.exp(-np.maximum(t - c, 0) / 0.08), 0.0))
    return np.repeat(env[None], d, axis=0).astype(np.float32)


@pytest.fixture(scope="module")
def clicks(proc):
    audio, times = click_track(proc)
    return M.audio_features(audio, processor=proc, num_devices=4), times


def test_features_are_on_the_cqt_frame_grid(proc, clicks):
    feats, _ = clicks
    assert feats.frame_rate == proc.frame_rate
    assert feats.loudness.shape == feats.onset.shape == (proc.num_frames,)
    assert feats.band_energy.shape == (4, proc.num_frames)
    assert np.all(np.isfinite(feats.band_energy)) and np.all(np.isfinite(feats.loudness))
    # band edges come from the CQT bins: contiguous, starting half a bin below fmin
    edges = M.band_edges_hz(proc, 4)
    assert edges[0][0] == pytest.approx(proc.frequencies()[0] * 2 ** (-1 / 24))
    assert all(np.isclose(edges[i][1], edges[i + 1][0]) for i in range(3))


def test_beat_tracker_finds_the_click_track(clicks):
    feats, times = clicks
    assert len(feats.beats) >= len(times) - 3
    assert M.match_events(times, feats.beats, 0.05) >= len(feats.beats) - 1


def test_peaks_on_the_clicks_score_f_near_one_and_shifted_peaks_low(proc, clicks):
    feats, times = clicks
    on = M.show_metrics(peaks_at(times, proc), feats)
    assert on["beat_f"] > 0.85 and on["beat_precision"] > 0.85 and on["beat_recall"] > 0.85
    late = M.show_metrics(peaks_at(times + 0.2, proc), feats)
    assert late["beat_f"] < 0.2
    # a light on every other beat: precise but half the recall
    half = M.show_metrics(peaks_at(times[::2], proc), feats)
    assert half["beat_precision"] > 0.85 and 0.35 < half["beat_recall"] < 0.65
    # rising with the clicks correlates with onset strength; late rises do not
    assert on["novelty_corr"] > 0.5 > late["novelty_corr"]


def test_noise_has_peaks_near_every_beat_but_a_low_f(proc, clicks):
    feats, _ = clicks
    noise = np.random.default_rng(0).random((4, proc.num_frames)).astype(np.float32)
    m = M.show_metrics(noise, feats)
    assert m["beat_recall"] > 0.5  # what a recall-only score would reward
    assert m["beat_f"] < 0.5 and m["beat_precision"] < 0.4


def test_constant_light_scores_zero_not_nan(proc, clicks):
    feats, _ = clicks
    for level in (0.0, 0.7):
        m = M.show_metrics(np.full((4, proc.num_frames), level, np.float32), feats)
        assert m["novelty_corr"] == 0.0 and m["loudness_corr"] == 0.0 and m["band_corr"] == 0.0
        assert m["beat_f"] == 0.0 and m["flashes"] == 0.0 and m["flash_safe"] == 1.0
        assert m["std_time"] == 0.0 and m["mean_brightness"] == pytest.approx(level)
        assert np.isnan(m["ssm_corr"])  # clip shorter than SSM_MIN_SECONDS


@pytest.mark.parametrize("hz", [2.0, 5.0, 10.0])
def test_a_square_strobe_flashes_at_its_rate(proc, hz):
    t = np.arange(proc.num_frames) / proc.frame_rate
    strobe = ((t * hz) % 1.0 < 0.5).astype(np.float32)
    n = M.flash_count(strobe, proc.frame_rate)
    assert abs(n - hz) <= 1.0
    small = 0.5 + 0.04 * strobe  # ripples below the 10 % swing are not flashes
    assert M.flash_count(small, proc.frame_rate) == 0.0


def test_transitions_are_hysteresis_turning_points():
    a = np.array([[0.0, 0.5, 0.45, 0.46, 0.0, 0.0, 1.0]])
    ev = M.transitions(a, 0.1)
    # 0->0.5 rise, 0.5->0.0 fall (the 0.05 ripple is not one), 0->1 rise: 3 turning points
    assert ev.sum() == 3 and ev[0, 1] and ev[0, 4] and ev[0, 6]


def test_loudness_and_band_correlation_follow_the_right_band(proc):
    sr, t = proc.sample_rate, np.arange(proc.num_samples) / proc.sample_rate
    bass_env = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)  # slow swell in the lowest band
    treble_env = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t + 1.0)
    audio = 0.5 * bass_env * np.sin(2 * np.pi * 55 * t) + 0.05 * treble_env * np.sin(
        2 * np.pi * 2000 * t)
    feats = M.audio_features(np.stack([audio, audio]).astype(np.float32), processor=proc,
                             num_devices=4)
    assert sr == proc.sample_rate
    tf = np.arange(proc.num_frames) / proc.frame_rate
    bass_light = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * tf)
    treble_light = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * tf + 1.0)
    good = np.stack([bass_light, 0 * tf + 0.5, 0 * tf + 0.5, treble_light])
    swapped = good[[3, 1, 2, 0]]
    assert M.pearson(good[0], feats.band_energy[0]) > 0.8  # linear light vs dB energy
    assert M.pearson(good[3], feats.band_energy[3]) > 0.8
    assert M.show_metrics(good, feats)["band_corr"] > M.show_metrics(swapped, feats)["band_corr"] + 0.3
    # the bass carries the loudness: all devices on the bass swell follow loudness
    assert M.show_metrics(np.repeat(bass_light[None], 4, 0), feats)["loudness_corr"] > 0.9
    assert M.show_metrics(1 - np.repeat(bass_light[None], 4, 0), feats)["loudness_corr"] < -0.9


def test_ssm_correlation_on_a_song_with_sections():
    p = CQTProcessor(max_duration=16.0)
    t = np.arange(p.num_samples) / p.sample_rate
    section = (t // 2.0).astype(int) % 2  # A B A B ... every 2 s
    rng = np.random.default_rng(0)
    audio = np.where(section == 0, 0.3 * np.sin(2 * np.pi * 110 * t),
                     0.1 * rng.standard_normal(t.size)).astype(np.float32)
    feats = M.audio_features(audio, processor=p, num_devices=4)
    tf = np.arange(p.num_frames) / p.frame_rate
    sec_f = (tf // 2.0).astype(int) % 2
    follows = np.stack([np.where(sec_f == 0, 0.8, 0.1), np.where(sec_f == 0, 0.1, 0.8),
                        0 * tf + 0.3, 0 * tf + 0.3])
    other = np.stack([np.where((tf // 3.0).astype(int) % 2 == 0, 0.8, 0.1)] * 4)
    assert M.ssm_correlation(follows, feats) > 0.7
    assert M.ssm_correlation(follows, feats) > M.ssm_correlation(other, feats) + 0.4


def test_bad_input_gets_a_clear_error(proc, clicks):
    feats, _ = clicks
    with pytest.raises(ValueError, match="actions must be"):
        M.show_metrics(np.zeros((3, proc.num_frames)), feats)
    with pytest.raises(ValueError, match="NaN"):
        M.audio_features(np.full(1000, np.nan, np.float32), processor=proc, num_devices=4)
    with pytest.raises(ValueError, match="clips"):
        M.metrics_batch(np.zeros((2, 4, proc.num_frames)), [feats])


def test_batch_and_summary(proc, clicks):
    feats, times = clicks
    acts = np.stack([peaks_at(times, proc), np.zeros((4, proc.num_frames), np.float32)])
    per = M.metrics_batch(acts, [feats, feats])
    assert set(per) == set(M.METRICS) and per["beat_f"].shape == (2,)
    s = M.summarise(per)
    assert s["flash_safe"] == pytest.approx(np.mean(per["flash_safe"]))
    assert s["beat_f"] == pytest.approx(per["beat_f"].mean()) and np.isnan(s["ssm_corr"])


def test_evaluator_and_report_carry_the_metrics_from_the_audio(tmp_path):
    import json

    from agents import evaluate
    from agents.common import Evaluator, split_data

    split = split_data("synthetic:4", max_duration=3.0, eval_clips=3)
    ev = Evaluator(split.eval, split.eval_indices)
    acts = np.random.default_rng(0).random((3, 4, ev.cqts.shape[-1])).astype(np.float32)
    res = ev.score_actions(acts)
    for j, i in enumerate(split.eval_indices):  # the same as the metrics on the clip's audio
        f = M.audio_features(split.eval.get_audio(int(i)), processor=split.processor, num_devices=4)
        want = M.show_metrics(acts[j], f)
        for k in ("beat_f", "novelty_corr", "band_corr", "flashes"):
            assert res.metrics[k][j] == pytest.approx(want[k]), k
    report = evaluate.write_report("random", ev, tmp_path, plots=0)
    saved = json.loads((tmp_path / "report.json").read_text())
    for m in (saved["metrics"], saved["baselines"]["band-follow"]["metrics"],
              saved["baselines"]["random"]["metrics"]):
        assert {"beat_f", "novelty_corr", "loudness_corr", "band_corr", "flash_safe"} <= set(m)
    band, noise = (saved["baselines"][k]["metrics"] for k in ("band-follow", "random"))
    assert band["loudness_corr"] > noise["loudness_corr"] + 0.3
    assert band["flashes"] < noise["flashes"]
    assert report["metrics"]["mean_brightness"] == pytest.approx(saved["metrics"]["mean_brightness"])
    assert "beat-peak F-measure" in (tmp_path / "report.md").read_text()
