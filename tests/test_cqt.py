"""CQTProcessor and load_audio: shapes, ranges, channels, resampling, parity with librosa."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tone

from cqtml_env import CQTProcessor, load_audio
from cqtml_env.features.audio import AudioLoadError, to_stereo

SR = 22050
A4_BIN = 45  # 12 * log2(440 / C1): MIDI 69 - 24


@pytest.fixture(scope="module")
def proc() -> CQTProcessor:
    return CQTProcessor(max_duration=1.0)


def sine(seconds=1.0, sr=SR, freq=440.0, amp=1.0) -> np.ndarray:
    return tone(seconds, sr, freq, amp)[:, 0]


def test_default_shape_matches_contract():
    p = CQTProcessor()
    assert p.shape == (2, 84, 216)
    assert p.num_frames == 1 + 110250 // 512
    out = p(np.zeros((2, 1000), dtype=np.float32))
    assert out.shape == (2, 84, 216) and out.dtype == np.float32


def test_range_dtype_and_determinism(proc):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal((2, SR))).astype(np.float32)
    a, b = proc(x), proc(x.copy())
    assert a.shape == (2, 84, proc.num_frames)
    assert a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert a.max() > 0.3  # noise at -10 dBFS is well above the floor
    np.testing.assert_array_equal(a, b)


def test_silence_is_zero(proc):
    assert proc(np.zeros(SR, dtype=np.float32)).max() == 0.0


def test_mono_is_duplicated(proc):
    out = proc(sine(amp=0.5))
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_allclose(out, proc(np.stack([sine(amp=0.5)] * 2)), atol=1e-6)


def test_more_than_two_channels_downmixed(proc):
    s = sine(amp=0.5)
    z = np.zeros_like(s)
    out = proc(np.stack([s, z, s, z]))  # even channels -> left, odd -> right
    assert out[0, A4_BIN].mean() > 0.8
    assert out[1].max() == 0.0
    assert to_stereo(np.zeros((6, 10))).shape == (2, 10)


@pytest.mark.parametrize("sr", [44100, 8000])
def test_resampled_tone_lands_in_same_bin(proc, sr):
    out = proc(sine(sr=sr, amp=0.5), sample_rate=sr)
    mid = out[0, :, 10:-10].mean(axis=1)
    assert int(np.argmax(mid)) == A4_BIN
    assert abs(mid[A4_BIN] - (1 - 6.02 / 80)) < 0.03  # amplitude 0.5 -> -6 dB


def test_short_clip_zero_padded(proc):
    out = proc(sine(0.3, amp=0.5))
    assert out.shape == proc.shape
    t_end = int(0.45 * proc.frame_rate)
    assert out[:, :, : int(0.2 * proc.frame_rate)].max() > 0.8
    tail = out[:, :, t_end + 3 :]
    assert tail[:, 24:].max() == 0.0  # padding is silence (low bins' long filters smear a bit)
    assert tail.max() < 0.1


def test_long_input_is_cut(proc):
    assert proc(sine(3.0)).shape == proc.shape


def test_parity_with_librosa_full_scale_sine(proc):
    import librosa

    x = sine(amp=1.0)
    ours = proc(x)[0]
    ref = np.abs(librosa.cqt(x, sr=SR, hop_length=512, fmin=librosa.note_to_hz("C1"), n_bins=84))
    assert int(np.argmax(ref[:, 20:-20].mean(axis=1))) == A4_BIN
    assert int(np.argmax(ours[:, 20:-20].mean(axis=1))) == A4_BIN
    assert abs(float(ours[A4_BIN, 20:-20].mean()) - 1.0) < 0.02  # full-scale sine -> ~1.0
    # same numbers as librosa's magnitude on the documented dB scale
    expect = np.clip((20 * np.log10(np.maximum(ref, 1e-10)) - proc.full_scale_db()[:, None] + 80) / 80, 0, 1)
    np.testing.assert_allclose(ours, expect, atol=1e-4)


@pytest.mark.parametrize("midi", [36, 69, 96])
def test_full_scale_flat_across_frequency(proc, midi):
    f = 440.0 * 2 ** ((midi - 69) / 12)
    out = proc(sine(freq=f, amp=1.0))[0, :, 20:-20].mean(axis=1)
    assert int(np.argmax(out)) == midi - 24
    assert abs(out[midi - 24] - 1.0) < 0.03


def test_nan_rejected(proc):
    x = sine()
    x[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        proc(x)


def test_batch_matches_single(proc):
    a, b = sine(amp=0.2), sine(freq=220.0, amp=0.7)
    batch = proc.batch([a, b])
    assert batch.shape == (2, *proc.shape)
    np.testing.assert_allclose(batch[1], proc(b), atol=1e-6)


def test_file_path_input(proc, tmp_path, write_audio):
    path = write_audio(tmp_path / "a.flac", seconds=2.0, sr=44100, amp=0.5, channels=2)
    out = proc(path)
    assert out.shape == proc.shape
    assert int(np.argmax(out[0, :, 10:-10].mean(axis=1))) == A4_BIN
    np.testing.assert_allclose(proc(str(path), offset=0.5), out, atol=0.02)


def test_load_audio_offset_duration_and_errors(tmp_path, write_audio):
    path = write_audio(tmp_path / "a.wav", seconds=2.0, sr=8000)
    audio, sr = load_audio(path, 22050, offset=0.5, duration=1.0)
    assert sr == 22050 and audio.shape == (2, 22050) and audio.dtype == np.float32
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 20)
    with pytest.raises(AudioLoadError, match="junk.wav"):
        load_audio(tmp_path / "junk.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioLoadError, match="empty"):
        load_audio(tmp_path / "empty.wav")


def test_numba_warmup_runs_the_librosa_paths(monkeypatch):
    """The warm-up must reach the beat tracker (with both envelope dtypes) and the tempo
    estimate: compiling those kernels in parallel workers is what segfaulted fresh CI runs."""
    import librosa

    from cqtml_env.warmup import warm_numba_caches

    seen: list[tuple[str, str]] = []
    beat_track, tempo = librosa.beat.beat_track, librosa.feature.tempo

    def spy_beats(*a, **kw):
        seen.append(("beat_track", str(np.asarray(kw["onset_envelope"]).dtype)))
        return beat_track(*a, **kw)

    def spy_tempo(*a, **kw):
        seen.append(("tempo", ""))
        return tempo(*a, **kw)

    monkeypatch.setattr(librosa.beat, "beat_track", spy_beats)
    monkeypatch.setattr(librosa.feature, "tempo", spy_tempo)
    assert warm_numba_caches() > 0.0
    assert {("beat_track", "float32"), ("beat_track", "float64"), ("tempo", "")} <= set(seen)


def test_warmup_rebuilds_a_cache_that_crashes_a_fresh_process(tmp_path):
    """A corrupt kernel cache (left by a process that compiled at the same time) is detected
    by the fresh-process probe, deleted and rebuilt; a cache that stays broken is an error."""
    from cqtml_env.warmup import ensure_warm, probe_kernels

    assert probe_kernels() == 0  # this environment's cache works (the suite runs after warm-up)
    files = [tmp_path / "beat.f-1.py311.nbi", tmp_path / "guf-beat.f-1.py311.1.nbc"]
    calls: list[str] = []

    def warm() -> float:
        calls.append("warm")
        for f in files:
            f.write_bytes(b"x")
        return 0.0

    results = iter([-11, 0])  # SIGSEGV, then fine

    def probe() -> int:
        calls.append("probe")
        if calls.count("probe") == 1:
            assert all(f.exists() for f in files)
        return next(results)

    deleted: list[bool] = []

    def cache_files():
        deleted.append(True)
        return list(files)

    ensure_warm(warm=warm, probe=probe, cache_files=cache_files, log=lambda m: calls.append(m))
    assert [c for c in calls if c in ("warm", "probe")] == ["warm", "probe", "warm", "probe"]
    assert any("exit -11" in c for c in calls) and deleted == [True]
    calls.clear()
    ok = ensure_warm(warm=warm, probe=lambda: 0, cache_files=cache_files, log=calls.append)
    assert ok >= 0.0 and calls == ["warm"]  # a good cache is left alone
    with pytest.raises(RuntimeError, match="still crash"):
        ensure_warm(warm=warm, probe=lambda: -11, cache_files=cache_files, log=lambda m: None)
